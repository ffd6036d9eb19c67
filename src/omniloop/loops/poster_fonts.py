"""The Chinese font embedded in the posters.

A poster must print the same on any printer and viewer, so the zh-TW text is drawn with a
real font embedded in the PDF, not with a font the viewer is expected to supply. We look
for Noto Sans CJK TC (Debian's fonts-noto-cjk) at run time: `fc-match`, then a list of
known locations. Those fonts are OpenType with CFF outlines, which reportlab cannot embed,
so the glyphs a document uses are cut out with fontTools and their outlines converted to
TrueType quadratics (a few hundred milliseconds, kept for the same text); reportlab then
embeds that subset (FontFile2). Without such a font, posters fall back, with a warning in the
log, to reportlab's built-in CID font `MSung-Light`, which the viewer must supply.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

log = logging.getLogger("omniloop.loops.posters")

FALLBACK_FONT = "MSung-Light"
# Families in order of preference (Traditional Chinese glyph shapes first).
FAMILIES = ("Noto Sans CJK TC", "Noto Sans TC", "Source Han Sans TC", "Noto Sans CJK JP")
KNOWN_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-{weight}.ttc",      # Debian, Ubuntu
    "/usr/share/fonts/noto-cjk/NotoSansCJK-{weight}.ttc",           # Arch
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-{weight}.ttc",    # Fedora
    "/usr/share/fonts/opentype/noto/NotoSansCJKtc-{weight}.otf",
    "/usr/share/fonts/noto-cjk/NotoSansCJKtc-{weight}.otf",
    "/usr/local/share/fonts/NotoSansCJK-{weight}.ttc",
    "/Library/Fonts/NotoSansCJK-{weight}.ttc",
)
PROBE = "臺灣門市號桌"  # a face that lacks these is no use for a zh-TW poster
_KEEP = 16


@dataclass(frozen=True)
class FontFile:
    path: str
    index: int  # the face in a .ttc collection


def _fc_match(pattern: str) -> FontFile | None:
    if shutil.which("fc-match") is None:
        return None
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}|%{index}", pattern],
                             capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path, _, index = out.strip().partition("|")
    if not path or not Path(path).is_file():
        return None
    return FontFile(path, int(index) if index.isdigit() else 0)


def _faces(path: str) -> list[Any]:
    from fontTools.ttLib import TTCollection
    from fontTools.ttLib import TTFont as ToolsFont

    if path.lower().endswith((".ttc", ".otc")):
        return list(TTCollection(path, lazy=True).fonts)
    return [ToolsFont(path, lazy=True)]


def _usable(candidate: FontFile) -> FontFile | None:
    """The candidate, or the collection's Traditional Chinese face, if it covers PROBE."""
    try:
        faces = _faces(candidate.path)
    except Exception:  # noqa: BLE001 - not a font we can read: look further
        return None
    order = [candidate.index] + [i for i, face in enumerate(faces)
                                 if " TC" in str(face["name"].getDebugName(1))]
    for index in dict.fromkeys(order):
        if not 0 <= index < len(faces):
            continue
        cmap = faces[index].getBestCmap() or {}
        if all(ord(ch) in cmap for ch in PROBE):
            return FontFile(candidate.path, index)
    return None


@cache
def find_cjk_font(bold: bool = False) -> FontFile | None:
    """A Traditional Chinese font file on this machine, or None."""
    style = ":bold" if bold else ""
    for family in FAMILIES:
        found = _fc_match(family + style)
        if found is not None and (usable := _usable(found)) is not None:
            return usable
    weight = "Bold" if bold else "Regular"
    for pattern in KNOWN_FILES:
        path = pattern.format(weight=weight)
        if Path(path).is_file() and (usable := _usable(FontFile(path, 0))) is not None:
            return usable
    return None


def subset_truetype(font: FontFile, text: str, ps_name: str) -> bytes:
    """The glyphs of `text` from the font, as a TrueType font reportlab can embed, named
    `ps_name` (reportlab tells embedded fonts apart by that name: two subsets of one font
    under one name would share the first one's glyphs)."""
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont as ToolsFont
    from fontTools.ttLib import newTable

    tools = ToolsFont(font.path, fontNumber=font.index)
    options = subset.Options()
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.desubroutinize = True
    options.layout_features = []
    options.hinting = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(tools)
    if "glyf" not in tools:  # CFF outlines (cubic) → TrueType (quadratic)
        order = tools.getGlyphOrder()
        glyph_set = tools.getGlyphSet()
        glyf: Any = newTable("glyf")
        glyf.glyphOrder = order
        glyf.glyphs = {}
        for name in order:
            pen = TTGlyphPen(glyph_set)
            glyph_set[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
            glyf[name] = pen.glyph()
        tools["loca"] = newTable("loca")
        tools["glyf"] = glyf
        for table in ("CFF ", "VORG"):
            if table in tools:
                del tools[table]
        maxp: Any = newTable("maxp")
        maxp.tableVersion = 0x00010000
        for name in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                     "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                     "maxComponentElements"):
            setattr(maxp, name, 0)
        maxp.maxZones = 1
        tools["maxp"] = maxp
        tools["head"].glyphDataFormat = 0
        post = tools["post"]
        post.formatType = 2.0
        post.extraNames = []
        post.mapping = {}
        post.glyphOrder = None
        tools.sfntVersion = "\x00\x01\x00\x00"
    names = tools["name"]
    names.names = [n for n in names.names if n.nameID != 6]
    names.setName(ps_name, 6, 3, 1, 0x409)
    names.setName(ps_name, 6, 1, 0, 0)
    buffer = io.BytesIO()
    tools.save(buffer)
    return buffer.getvalue()


# Held while a PDF is drawn (posters.poster_pdf) and while fonts are registered: a font
# dropped from reportlab's registry (the oldest beyond _KEEP) is never in use by a drawing.
render_lock = threading.RLock()
_registered: OrderedDict[str, str] = OrderedDict()
_warned = False


def cjk_font_for(text: str, *, bold: bool = False) -> str:
    """The name of a registered reportlab font that draws `text`: an embedded subset of the
    machine's CJK font, or the fallback CID font (with a warning, once)."""
    global _warned
    font = find_cjk_font(bold) or (find_cjk_font(False) if bold else None)
    if font is None:
        if not _warned:
            log.warning("no CJK font found (install fonts-noto-cjk): posters use the PDF "
                        "font %s, which the viewer or printer must supply", FALLBACK_FONT)
            _warned = True
        if FALLBACK_FONT not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_FONT))
        return FALLBACK_FONT
    chars = "".join(sorted(set(text) - {"\n"}))
    key = hashlib.sha256(f"{font.path}|{font.index}|{chars}".encode()).hexdigest()[:16]
    with render_lock:
        name = _registered.get(key)
        if name is not None:
            _registered.move_to_end(key)
            return name
        name = f"OmniloopCJK-{key}"
        pdfmetrics.registerFont(TTFont(name, io.BytesIO(subset_truetype(font, chars, name))))
        _registered[key] = name
        fonts: dict[str, Any] = getattr(pdfmetrics, "_fonts", {})
        while len(_registered) > _KEEP:  # reportlab has no public way to forget a font
            fonts.pop(_registered.popitem(last=False)[1], None)
        return name
