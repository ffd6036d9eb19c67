"""QR rendering: a real token, drawn by segno, reads back exactly with zxing-cpp.

zxing-cpp reads images from numpy arrays, PIL images or any buffer with a 2-D shape. Neither
numpy nor PIL is a dependency, so the images are plain `memoryview`s of 8-bit grey pixels:
once built from segno's module matrix, and once decoded from the PNG bytes themselves (a
small stdlib PNG reader below), so the file we serve is what is tested.
"""

from __future__ import annotations

import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import zxingcpp

from omniloop.core.ids import new_id
from omniloop.core.qr import make_qr, qr_png, qr_svg
from omniloop.core.tokens import TokenKind, sign_token, verify_token


@pytest.fixture
def token() -> str:
    return sign_token(new_id(), TokenKind.COUPON, new_id(),
                      datetime.now(UTC) + timedelta(days=30))


def _grey_image(rows: list[list[int]]) -> memoryview:
    """An 8-bit greyscale image zxing-cpp can read: 0 = black, 255 = white."""
    height, width = len(rows), len(rows[0])
    return memoryview(bytes(v for row in rows for v in row)).cast("B", (height, width))


def _decode(image: memoryview) -> str:
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, "no QR code found"
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0].text


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _png_to_grey(data: bytes) -> list[list[int]]:
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
            predictor = (0, left, up, (left + up) // 2, _paeth(left, up, upper_left))
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


def test_token_uses_the_alphanumeric_mode_and_a_small_symbol(token: str) -> None:
    qr = make_qr(token)
    assert qr.mode == "alphanumeric"
    assert qr.error in ("M", "Q", "H")
    # 173 alphanumeric characters fit version 7 at level M (45 x 45 modules, max 178).
    assert qr.version == 7


def test_matrix_decodes_to_the_token(token: str) -> None:
    qr = make_qr(token)
    scale = 4
    rows = [[0 if dark else 255 for dark in row for _ in range(scale)]
            for row in qr.matrix_iter(scale=1, border=4) for _ in range(scale)]
    assert _decode(_grey_image(rows)) == token


def test_png_bytes_decode_to_a_token_that_verifies() -> None:
    tenant, coupon = new_id(), new_id()
    token = sign_token(tenant, TokenKind.COUPON, coupon, datetime.now(UTC) + timedelta(days=1))
    png = qr_png(token, scale=4)
    rows = _png_to_grey(png)
    assert len(rows) == len(rows[0]) == (45 + 2 * 4) * 4
    text = _decode(_grey_image(rows))
    assert text == token
    assert verify_token(text, tenant_id=tenant, kind=TokenKind.COUPON).subject_id == coupon


def test_svg_is_inline_markup_that_scales(token: str) -> None:
    svg = qr_svg(token, scale=4)
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg
    assert re.search(r'viewBox="0 0 212 212"', svg)      # (45 + 2 * 4) modules x 4
    assert 'width="212px"' in svg
    assert 'height="212px"' in svg
    assert 'fill="#fff"' in svg                           # drawn background: dark pages
    assert svg.rstrip().endswith("</svg>")


def test_short_text_still_renders() -> None:
    assert _decode(_grey_image(_png_to_grey(qr_png("SUMMER2026", scale=4)))) == "SUMMER2026"
