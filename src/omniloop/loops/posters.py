"""Printable touchpoint posters: A4 (wall, window) or A6 (table tent, counter card) PDFs.

Drawn with reportlab. The QR code is vector: each dark module of segno's matrix is a filled
rectangle (adjacent modules of a row merged into one), so it prints sharp at any size, with
the 4-module quiet zone the specification asks for. Chinese text (and any text beyond
Latin-1, e.g. a Chinese store name on an English poster) is drawn with the machine's Noto
Sans CJK TC, of which the glyphs used are embedded (poster_fonts.py), so it prints the same
on any printer and viewer; without that font, with the PDF font `MSung-Light` and a warning.

Each page carries: the store name, the table number or placement, the call to action for
the purpose in the chosen language, the QR code with its short URL in text (for people who
type it), and the incentive with its disclosure line, honest about what is given and that
it never depends on what people answer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4, A6
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from omniloop.core.qr import QUIET_ZONE, make_qr
from omniloop.loops.models import Purpose
from omniloop.loops.poster_fonts import cjk_font_for, render_lock

LATIN_FONT = "Helvetica"
LATIN_BOLD = "Helvetica-Bold"
SIZES = {"a4": A4, "a6": A6}

# The call to action per purpose, in both languages (posters are printed in one language
# chosen in the admin, whatever language the admin page itself is in).
CALLS: dict[Purpose, dict[str, str]] = {
    Purpose.membership: {"zh_TW": "掃描加入會員", "en": "Scan to join"},
    Purpose.line_follow: {"zh_TW": "掃描加入 LINE 好友", "en": "Scan to add us on LINE"},
    Purpose.feedback: {"zh_TW": "掃描告訴我們您的感受", "en": "Scan to tell us how we did"},
    Purpose.review: {"zh_TW": "掃描留下評論", "en": "Scan to write a review"},
    Purpose.referral: {"zh_TW": "掃描推薦好友", "en": "Scan to invite a friend"},
    Purpose.claim: {"zh_TW": "掃描領取優惠券", "en": "Scan to get your coupon"},
    Purpose.url: {"zh_TW": "掃描了解更多", "en": "Scan to find out more"},
}
TABLE = {"zh_TW": "{number} 號桌", "en": "Table {number}"}
DISCLOSURE = {
    "zh_TW": "獎勵與您的評分或意見內容無關；每人限領一次，依品牌條款辦理。",
    "en": "The reward does not depend on your rating or what you say; one per person, "
          "brand terms apply.",
}
POINTS = {"zh_TW": "{points} 點", "en": "{points} points"}
GET = {"zh_TW": "完成即得：{what}", "en": "Get: {what}"}


@dataclass(frozen=True)
class PosterPage:
    url: str
    store_name: str
    purpose: Purpose
    number: int | None = None
    label: str = ""
    points: int = 0
    offer: str = ""  # the coupon's value as people read it, e.g. "NT$50 off"


@dataclass(frozen=True)
class _Fonts:
    """The fonts of one document: the CJK ones hold the glyphs of all its text."""

    cjk: str
    cjk_bold: str
    language: str

    def of(self, text: str, bold: bool = False) -> str:
        if self.language == "zh_TW" or any(ord(ch) > 0xFF for ch in text):
            return self.cjk_bold if bold else self.cjk
        return LATIN_BOLD if bold else LATIN_FONT


def _texts(page: PosterPage, language: str) -> list[str]:
    place = (TABLE[language].format(number=page.number) if page.number is not None
             else page.label)
    incentive = " + ".join([page.offer] if page.offer else [])
    return [page.store_name, place, CALLS[page.purpose][language], page.url, incentive,
            GET[language], POINTS[language], DISCLOSURE[language], "0123456789 + "]


def _centred(canvas: Canvas, text: str, y: float, font: str, size: float, width: float,
             max_width: float) -> None:
    """One line, centred, shrunk until it fits the width."""
    while size > 5 and pdfmetrics.stringWidth(text, font, size) > max_width:
        size -= 0.5
    canvas.setFont(font, size)
    canvas.drawCentredString(width / 2, y, text)


def _wrapped(text: str, font: str, size: float, max_width: float) -> list[str]:
    """Greedy line breaks: by word for English, by character for Chinese."""
    units = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    lines: list[str] = []
    line = ""
    for unit in units:
        candidate = f"{line}{joiner}{unit}" if line else unit
        if pdfmetrics.stringWidth(candidate, font, size) <= max_width:
            line = candidate
        else:
            if line:
                lines.append(line)
            line = unit
    if line:
        lines.append(line)
    return lines


def draw_qr(canvas: Canvas, data: str, x: float, y: float, size: float) -> None:
    """The QR code as filled rectangles in a `size`-square at (x, y), quiet zone included."""
    matrix = make_qr(data).matrix
    modules = len(matrix) + 2 * QUIET_ZONE
    unit = size / modules
    canvas.setFillColorRGB(1, 1, 1)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    canvas.setFillColorRGB(0, 0, 0)
    for row_index, row in enumerate(matrix):
        top = y + size - (row_index + QUIET_ZONE + 1) * unit
        column = 0
        while column < len(row):
            if row[column] & 1:
                start = column
                while column < len(row) and row[column] & 1:
                    column += 1
                canvas.rect(x + (start + QUIET_ZONE) * unit, top, (column - start) * unit,
                            unit, stroke=0, fill=1)
            else:
                column += 1


def poster_pdf(pages: list[PosterPage], *, size: str = "a4", language: str = "zh_TW") -> bytes:
    """The PDF, one page per touchpoint."""
    with render_lock:
        text = "".join(t for page in pages for t in _texts(page, language))
        fonts = _Fonts(cjk=cjk_font_for(text), cjk_bold=cjk_font_for(text, bold=True),
                       language=language)
        return _draw(pages, size, language, fonts)


def _draw(pages: list[PosterPage], size: str, language: str, fonts: _Fonts) -> bytes:
    width, height = SIZES[size]
    scale = width / A4[0]  # type sizes follow the paper
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(width, height), pageCompression=1)
    canvas.setTitle("omniloop touchpoints")
    margin = 12 * mm * scale
    usable = width - 2 * margin
    disclosure = DISCLOSURE[language]
    for page in pages:
        place = (TABLE[language].format(number=page.number) if page.number is not None
                 else page.label)
        qr_size = min(usable, 120 * mm * scale)
        has_incentive = bool(page.offer or page.points)
        note_lines = len(_wrapped(disclosure, fonts.of(disclosure), 9 * scale, usable))
        # The block's height, to centre it on the page (a table tent is read head-on).
        block = (22 + (22 if place else 0) + 44 + 14 + 14) * scale + qr_size + (
            (30 * scale + note_lines * 9 * scale * 1.4) if has_incentive else 0)
        y = height - max(margin, (height - block) / 2) - 22 * scale
        _centred(canvas, page.store_name, y, fonts.of(page.store_name, True), 22 * scale,
                 width, usable)
        if place:
            y -= 22 * scale
            _centred(canvas, place, y, fonts.of(place), 16 * scale, width, usable)
        y -= 44 * scale
        call = CALLS[page.purpose][language]
        _centred(canvas, call, y, fonts.of(call, True), 34 * scale, width, usable)
        y -= 14 * scale + qr_size
        draw_qr(canvas, page.url, (width - qr_size) / 2, y, qr_size)
        y -= 14 * scale
        _centred(canvas, page.url, y, LATIN_FONT, 10 * scale, width, usable)
        incentive = [page.offer] if page.offer else []
        if page.points:
            incentive.append(POINTS[language].format(points=page.points))
        if incentive:
            y -= 30 * scale
            get = GET[language].format(what=" + ".join(incentive))
            _centred(canvas, get, y, fonts.of(get, True), 18 * scale, width, usable)
            font = fonts.of(disclosure)
            note = 9 * scale
            for line in _wrapped(disclosure, font, note, usable):
                y -= note * 1.4
                _centred(canvas, line, y, font, note, width, usable)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()
