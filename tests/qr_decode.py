"""Reading QR codes back in tests: PNG bytes → grey pixels → zxing-cpp.

Neither numpy nor PIL is a dependency; zxing-cpp reads any 2-D buffer, so images are plain
`memoryview`s of 8-bit grey pixels, decoded from PNG with a small stdlib reader. Used for the
PNGs omniloop renders and for screenshots Chromium takes of pages.
"""

from __future__ import annotations

import struct
import zlib

import zxingcpp


def grey_image(rows: list[list[int]]) -> memoryview:
    """An 8-bit greyscale image zxing-cpp can read: 0 = black, 255 = white."""
    height, width = len(rows), len(rows[0])
    return memoryview(bytes(v for row in rows for v in row)).cast("B", (height, width))


def decode_image(image: memoryview) -> str:
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, "no QR code found"
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0].text


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_to_grey(data: bytes) -> list[list[int]]:
    """Decode a greyscale or palette PNG (bit depth 1-8, no interlace) to grey rows, checking
    signature and CRCs: enough to read what segno writes, strict enough to catch a bad file."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, palette = 8, b"", None
    header: tuple[int, ...] = ()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = [body[i:i + 3] for i in range(0, len(body), 3)]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert color in (0, 3), header
    assert depth in (1, 2, 4, 8), header
    assert interlace == 0, header
    stride = (width * depth + 7) // 8
    bpp = 1                                  # bytes per pixel for filtering, at least 1
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    rows: list[list[int]] = []
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        filter_type, current = line[0], bytearray(line[1:])
        for i in range(stride):
            left = current[i - bpp] if i >= bpp else 0
            up = previous[i]
            upper_left = previous[i - bpp] if i >= bpp else 0
            predictor = (0, left, up, (left + up) // 2, paeth(left, up, upper_left))
            current[i] = (current[i] + predictor[filter_type]) & 0xFF
        previous = current
        values = []
        for x in range(width):
            bit = x * depth
            value = (current[bit // 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1)
            if palette is not None:
                rgb = palette[value]
                values.append((rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114) // 1000)
            else:
                values.append(value * 255 // ((1 << depth) - 1))
        rows.append(values)
    return rows


def decode_png(data: bytes) -> str:
    """The text of the one QR code in a PNG image."""
    return decode_image(grey_image(png_to_grey(data)))
