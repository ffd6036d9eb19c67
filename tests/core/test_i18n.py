"""Every string people see exists in zh-TW (the default language), and negotiation works."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

import omniloop
from omniloop.core import i18n

SOURCE = Path(omniloop.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def extracted_msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(SOURCE), METHODS, keywords=KEYWORDS,
            options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n",
                                                   "trimmed": "false"}}):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def translated_msgids() -> set[str]:
    """Msgids with a non-empty zh-TW translation (which may equal the msgid, like 'LINE')."""
    from babel.messages.pofile import read_po

    found: set[str] = set()
    for po_file in (i18n.LOCALE_DIR / "zh_TW" / "LC_MESSAGES").glob("*.po"):
        with po_file.open("rb") as handle:
            found |= {str(m.id) for m in read_po(handle) if m.id and m.string}
    return found


def test_every_msgid_has_a_zh_tw_translation() -> None:
    msgids = extracted_msgids()
    assert len(msgids) > 20, "extraction found suspiciously few strings"
    translated = translated_msgids()
    missing = {m: where for m, where in msgids.items() if m not in translated}
    assert not missing, "untranslated (add to a .po under locale/zh_TW/LC_MESSAGES):\n" + "\n".join(
        f"  {where}: {m!r}" for m, where in sorted(missing.items(), key=lambda kv: kv[1]))


def test_translations_keep_format_placeholders() -> None:
    import re

    catalog = i18n.translations("zh_TW")
    placeholder = re.compile(r"\{(\w+)\}|%\((\w+)\)s")
    for msgid in extracted_msgids():
        translated = catalog.gettext(msgid)
        assert sorted(placeholder.findall(msgid)) == sorted(placeholder.findall(translated)), (
            msgid, translated)


@pytest.mark.parametrize(("header", "expected"), [
    ("zh-TW,zh;q=0.9,en;q=0.8", "zh_TW"),
    ("en-US,en;q=0.9", "en"),
    ("fr-FR, en;q=0.5", "en"),
    ("zh-Hant", "zh_TW"),
    ("ja", None),
    ("", None),
    ("en;q=0.2, zh-TW;q=0.8", "zh_TW"),
    ("garbage;;;q=x", None),
])
def test_accept_language_negotiation(header: str, expected: str | None) -> None:
    assert i18n.negotiate(header) == expected


def test_catalogs_hold_no_stale_entries() -> None:
    from babel.messages.pofile import read_po

    used = set(extracted_msgids())
    stale: list[str] = []
    for po_file in sorted((i18n.LOCALE_DIR / "zh_TW" / "LC_MESSAGES").glob("*.po")):
        with po_file.open("rb") as handle:
            stale += [f"{po_file.name}: {m.id!r}" for m in read_po(handle)
                      if m.id and m.id not in used]
    assert not stale, "translations no code uses (remove them):\n" + "\n".join(stale)


def test_catalogs_agree_on_shared_msgids() -> None:
    """The same English string in two module catalogs must have one translation; otherwise
    whichever file loads last silently wins. Use a different msgid when meanings differ."""
    from babel.messages.pofile import read_po

    seen: dict[str, tuple[str, str]] = {}
    conflicts: list[str] = []
    for po_file in sorted((i18n.LOCALE_DIR / "zh_TW" / "LC_MESSAGES").glob("*.po")):
        with po_file.open("rb") as handle:
            for message in read_po(handle):
                if not message.id:
                    continue
                msgid, text = str(message.id), str(message.string)
                if msgid in seen and seen[msgid][1] != text:
                    conflicts.append(f"{msgid!r}: {seen[msgid][0]}={seen[msgid][1]!r} vs "
                                     f"{po_file.name}={text!r}")
                seen.setdefault(msgid, (po_file.name, text))
    assert not conflicts, "\n".join(conflicts)
