"""Posters embed a real CJK font (a subset of Noto Sans CJK TC), so zh-TW text prints the
same everywhere; without one they fall back, with a warning, to the viewer's MSung-Light."""

from __future__ import annotations

import logging
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from omniloop.loops import poster_fonts
from omniloop.loops.models import Purpose
from omniloop.loops.posters import PosterPage, poster_pdf
from tests.loops.test_admin_posters_links import decode_pdf_pages

URL = "https://loop.example/t/ABCD2345"
PAGE = PosterPage(url=URL, store_name="豆留森林咖啡 信義店", purpose=Purpose.feedback,
                  number=12, points=20, offer="NT$50 折價券")


def _text(data: bytes) -> str:
    pdf = pdfium.PdfDocument(data)
    try:
        page = pdf[0]
        return str(page.get_textpage().get_text_range())
    finally:
        pdf.close()


@pytest.mark.skipif(poster_fonts.find_cjk_font() is None,
                    reason="no CJK font on this machine (install fonts-noto-cjk)")
@pytest.mark.parametrize(("size", "language"), [("a6", "zh_TW"), ("a4", "en")])
def test_the_cjk_font_is_embedded_and_the_qr_decodes(size: str, language: str) -> None:
    data = poster_pdf([PAGE], size=size, language=language)
    assert decode_pdf_pages(data) == [URL]
    assert b"/FontFile2" in data  # the font program itself is in the file
    assert b"MSung-Light" not in data
    text = _text(data)
    # The embedded glyphs map back to the text (ToUnicode): the store name, in either
    # language, and the zh-TW lines.
    assert "豆留森林咖啡 信義店" in text
    if language == "zh_TW":
        for line in ("12 號桌", "掃描告訴我們您的感受", "完成即得：NT$50 折價券 + 20 點"):
            assert line in text, line
    else:  # after the zh-TW poster, in the same process: its own glyphs (a regression)
        assert "Scan to tell us how we did" in text
        assert "Get: NT$50 折價券 + 20 points" in text


def test_without_a_cjk_font_the_builtin_cid_font_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(poster_fonts, "find_cjk_font", lambda bold=False: None)
    monkeypatch.setattr(poster_fonts, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="omniloop.loops.posters"):
        data = poster_pdf([PAGE], size="a6", language="zh_TW")
    assert decode_pdf_pages(data) == [URL]
    assert b"MSung-Light" in data
    assert b"/FontFile" not in data
    assert any("no CJK font found" in r.getMessage() for r in caplog.records)


def test_the_font_is_found_by_family_or_known_location(monkeypatch: pytest.MonkeyPatch) -> None:
    found = poster_fonts.find_cjk_font()
    if found is None:
        pytest.skip("no CJK font on this machine")
    assert Path(found.path).is_file()
    # Without fc-match, the list of known locations finds it too.
    monkeypatch.setattr(poster_fonts, "_fc_match", lambda pattern: None)
    poster_fonts.find_cjk_font.cache_clear()
    try:
        again = poster_fonts.find_cjk_font()
    finally:
        poster_fonts.find_cjk_font.cache_clear()
    if Path(found.path).parent.as_posix() in {Path(p).parent.as_posix()
                                             for p in poster_fonts.KNOWN_FILES}:
        assert again is not None
