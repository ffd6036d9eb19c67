"""Translations: zh-TW by default, English one click away.

Catalogs are the `.po` files under `omniloop/locale/<locale>/LC_MESSAGES/`, one per domain
module, merged at start-up and compiled in memory, so there is no binary `.mo` to build or
commit. Source strings are English; English therefore needs no catalog.

The request's locale lives in a context variable set by `LocaleMiddleware`, which is what the
templates' `_()` and the error renderer read.
"""

from __future__ import annotations

import gettext as gettext_module
from contextvars import ContextVar
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
SUPPORTED_LOCALES = ("zh_TW", "en")
DEFAULT_LOCALE = "zh_TW"
LANGUAGE_COOKIE = "omniloop_lang"

current_locale: ContextVar[str] = ContextVar("current_locale", default=DEFAULT_LOCALE)


@cache
def translations(locale: str) -> gettext_module.NullTranslations:
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    if not folder.is_dir():
        return gettext_module.NullTranslations()
    merged = Catalog(locale=locale)
    for po_file in sorted(folder.glob("*.po")):
        with po_file.open("rb") as handle:
            for message in read_po(handle, locale=locale):
                if message.id and message.string:
                    merged[message.id] = message
    buffer = BytesIO()
    write_mo(buffer, merged)
    buffer.seek(0)
    return gettext_module.GNUTranslations(buffer)


def gettext(message: str) -> str:
    return translations(current_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_locale.get()).ngettext(singular, plural, n)


def normalize_locale(value: str | None) -> str | None:
    """Map 'zh-TW', 'zh_Hant_TW', 'en-US', 'EN' and the like onto a supported locale."""
    if not value:
        return None
    try:
        parsed = Locale.parse(value.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    if parsed.language == "en":
        return "en"
    if parsed.language == "zh" and (parsed.territory in (None, "TW", "HK", "MO")
                                    or parsed.script == "Hant"):
        return "zh_TW"
    return None


def negotiate(accept_language: str | None) -> str | None:
    """The best supported locale from an Accept-Language header, by q-value."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        locale = normalize_locale(tag)
        if locale and quality > 0:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else None


def html_lang(locale: str) -> str:
    return "zh-Hant-TW" if locale == "zh_TW" else "en"
