"""Money as integer minor units of an ISO 4217 currency.

Amounts never pass through floats. The number of minor units per major unit follows
ISO 4217 through Babel's CLDR data (TWD has 2, so NT$120 is stored as 12000), which is what
card networks and payment providers exchange; display drops a zero fraction because
prices in Taiwan are whole dollars.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, get_currency_precision


@lru_cache(maxsize=64)
def minor_digits(currency: str) -> int:
    return int(get_currency_precision(currency))


@lru_cache(maxsize=64)
def _locale(locale: str) -> Locale:
    """Babel parses a locale name into its CLDR data on every call that is given a string
    (about a tenth of a POS validation's time went there): parsed once per name here."""
    return Locale.parse(locale)


def to_minor(major: Decimal | int | str, currency: str) -> int:
    """NT$120.5 → 12050. Rounds half up at the currency's precision."""
    scale = Decimal(10) ** minor_digits(currency)
    return int((Decimal(major) * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor) / (Decimal(10) ** minor_digits(currency))


@lru_cache(maxsize=4096)
def format_money(minor: int, currency: str, locale: str) -> str:
    """NT$120 for 12000 TWD in zh-TW. Remembered: the same few prices (a campaign's
    discount, its minimum spend) are shown again and again, and Babel takes ~20 µs each."""
    major = to_major(minor, currency)
    parsed = _locale(locale)
    if major == major.to_integral_value():
        return str(format_currency(major, currency, locale=parsed, format="¤#,##0",
                                   currency_digits=False))
    return str(format_currency(major, currency, locale=parsed))
