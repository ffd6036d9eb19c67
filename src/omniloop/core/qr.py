"""QR codes for pages (inline SVG) and downloads or printing (PNG), drawn with segno.

Error correction is at least M (15% of the symbol may be damaged): phone screens with cracks
and glare and creased paper coupons are the normal case at a counter, while H would make
the symbol markedly bigger for the 173-character tokens. segno chooses the smallest version
and the encoding mode itself (alphanumeric for the upper-case tokens) and raises the level
above M whenever that fits in the same version, which costs nothing.
"""

from __future__ import annotations

import io

import segno

ERROR_LEVEL = "m"
QUIET_ZONE = 4   # modules; the QR specification asks for 4 and scanners rely on it


def make_qr(data: str) -> segno.QRCode:
    """The QR symbol for the data: a full QR code (Micro QR is not read by phone cameras),
    at least level M, smallest version that holds the data."""
    return segno.make(data, error=ERROR_LEVEL, micro=False, boost_error=True)


def qr_svg(data: str, *, scale: int = 4, border: int = QUIET_ZONE,
           css_class: str = "qr") -> str:
    """Inline SVG markup for an HTML page.

    No XML declaration (it is an element inside HTML, not a document). `width`/`height` in
    px give a sensible default size and `viewBox` lets CSS resize it without blurring. The
    light background is drawn, not transparent, so the code stays readable on a dark page.
    """
    return make_qr(data).svg_inline(scale=scale, border=border, unit="px", dark="#000",
                                    light="#fff", svgclass=css_class, lineclass=None)


def qr_png(data: str, *, scale: int = 8, border: int = QUIET_ZONE) -> bytes:
    """PNG bytes (1-bit, a few hundred bytes) for downloads, e-mails and printing."""
    buffer = io.BytesIO()
    make_qr(data).save(buffer, kind="png", scale=scale, border=border, dark="#000",
                       light="#fff")
    return buffer.getvalue()
