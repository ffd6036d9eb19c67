"""QR rendering: a real token, drawn by segno, reads back exactly with zxing-cpp.

zxing-cpp reads images from numpy arrays, PIL images or any buffer with a 2-D shape. Neither
numpy nor PIL is a dependency, so the images are plain `memoryview`s of 8-bit grey pixels:
once built from segno's module matrix, and once decoded from the PNG bytes themselves (a
small stdlib PNG reader below), so the file we serve is what is tested.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from omniloop.core.ids import new_id
from omniloop.core.qr import make_qr, qr_png, qr_svg
from omniloop.core.tokens import TokenKind, sign_token, verify_token
from tests.qr_decode import decode_image as _decode
from tests.qr_decode import grey_image as _grey_image
from tests.qr_decode import png_to_grey as _png_to_grey


@pytest.fixture
def token() -> str:
    return sign_token(new_id(), TokenKind.COUPON, new_id(),
                      datetime.now(UTC) + timedelta(days=30))


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
