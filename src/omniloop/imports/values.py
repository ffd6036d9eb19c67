"""Parsing the cells of exported files: dates (also ROC 民國 years), times, prices, counts.

Each parser returns the value or raises `CellError` with a msgid naming what was expected.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation

from omniloop.core.errors import N_
from omniloop.core.money import minor_digits, to_minor
from omniloop.customers.models import Gender

ROC_OFFSET = 1911  # 民國 year + 1911 = Gregorian year

BAD_DATE = N_("'{value}' is not a date: use YYYY-MM-DD, YYYY/MM/DD or a ROC date like "
              "80/03/08.")
BAD_DATETIME = N_("'{value}' is not a date and time: use YYYY-MM-DD HH:MM, YYYY/MM/DD HH:MM "
                  "or a ROC date like 113/11/25 14:30.")
BAD_PRICE = N_("'{value}' is not an amount: use a number like 120, 1,200 or NT$120.")
BAD_QUANTITY = N_("'{value}' is not a quantity: use a whole number above zero.")
BAD_GENDER = N_("'{value}' is not a gender: use 男/女, M/F or male/female.")
BAD_CHANNEL = N_("'{value}' is not a channel: use 門市/store or 網路/online.")


class CellError(ValueError):
    def __init__(self, reason: str, **params: str) -> None:
        self.reason = reason
        self.params = params
        super().__init__(reason.format(**params) if params else reason)


def _plain(text: str) -> str:
    """Full-width digits and punctuation as ASCII, surrounding spaces gone."""
    return unicodedata.normalize("NFKC", text).strip()


# 2024-11-25, 2024/11/25, 2024.11.25, 113/11/25, 80-03-08, 2024年11月25日, 民國80年3月8日
_DATE = re.compile(
    r"(?:民國|民|roc)?\s*(?P<y>\d{1,4})\s*(?:[-/.]|年)\s*(?P<m>\d{1,2})\s*(?:[-/.]|月)\s*"
    r"(?P<d>\d{1,2})\s*日?", re.IGNORECASE)
# 20241125 (Gregorian), 1131125 and 800308 (ROC)
_COMPACT = re.compile(r"(?P<y>\d{2,4})(?P<m>\d{2})(?P<d>\d{2})")
_TIME = re.compile(
    r"(?:(?P<ampm1>上午|下午|am|pm)\s*)?(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})"
    r"(?:\.\d+)?)?\s*(?P<ampm2>上午|下午|am|pm)?", re.IGNORECASE)


def _year(text: str) -> int:
    """Four digits are a Gregorian year; one to three digits a ROC (民國) year."""
    year = int(text)
    return year if len(text) == 4 else year + ROC_OFFSET


def _date_part(text: str, reason: str) -> tuple[date, str]:
    """The date at the start of `text` and what follows it."""
    match = _DATE.match(text)
    if match is None:
        compact = _COMPACT.match(text)
        if compact is None or len(compact.group(0)) not in (6, 7, 8) or (
                compact.end() < len(text) and text[compact.end()].isdigit()):
            raise CellError(reason, value=text)
        match = compact
    try:
        value = date(_year(match.group("y")), int(match.group("m")), int(match.group("d")))
    except ValueError:
        raise CellError(reason, value=text) from None
    return value, text[match.end():].strip()


def parse_date(text: str) -> date:
    """'1991-03-08', '1991/3/8', '80/03/08' (ROC), '0800308', '民國80年3月8日' → 1991-03-08."""
    plain = _plain(text)
    value, rest = _date_part(plain, BAD_DATE)
    if rest and not re.fullmatch(r"(?:T?00:00(?::00)?)?", rest):
        raise CellError(BAD_DATE, value=text)
    return value


def parse_datetime(text: str) -> datetime:
    """A local date and time (no offset means the brand's time zone; the caller decides).

    '2024-11-25 14:30', '2024/11/25 下午 02:30:00', '113/11/25 14:30', '2024-11-25T14:30:00+08:00'
    and a date alone (midnight).
    """
    plain = _plain(text)
    try:
        return datetime.fromisoformat(plain)
    except ValueError:
        pass
    day, rest = _date_part(plain, BAD_DATETIME)
    if not rest:
        return datetime.combine(day, time())
    match = _TIME.fullmatch(rest.lstrip("T"))
    if match is None:
        raise CellError(BAD_DATETIME, value=text)
    hour, minute = int(match.group("h")), int(match.group("mi"))
    second = int(match.group("s") or 0)
    ampm = (match.group("ampm1") or match.group("ampm2") or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            raise CellError(BAD_DATETIME, value=text)
        hour = hour % 12 + (12 if ampm in ("下午", "pm") else 0)
    try:
        return datetime.combine(day, time(hour, minute, second))
    except ValueError:
        raise CellError(BAD_DATETIME, value=text) from None


def parse_time_of_day(text: str) -> time:
    """'14:30', '下午 02:30:00' (a separate time column)."""
    if _TIME.fullmatch(_plain(text)) is None:
        raise CellError(BAD_DATETIME, value=text)
    try:
        return parse_datetime(f"2000-01-01 {_plain(text)}").time()
    except CellError:
        raise CellError(BAD_DATETIME, value=text) from None


def parse_amount(text: str, currency: str) -> int:
    """'120', '1,200', 'NT$120', '$1,200.50', '120元' → minor units of `currency`."""
    cleaned = _plain(text).upper()
    for noise in ("NT$", "NTD", "TWD", "$", ",", "元", " "):
        cleaned = cleaned.replace(noise, "")
    try:
        major = Decimal(cleaned)
    except InvalidOperation:
        raise CellError(BAD_PRICE, value=text) from None
    if not major.is_finite() or major < 0:
        raise CellError(BAD_PRICE, value=text)
    exponent = major.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > minor_digits(currency):
        raise CellError(BAD_PRICE, value=text)
    return to_minor(major, currency)


def parse_quantity(text: str) -> int:
    """'2', '2.0', '1,000' → a whole number above zero."""
    cleaned = _plain(text).replace(",", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise CellError(BAD_QUANTITY, value=text) from None
    if not number.is_finite() or number <= 0 or number != number.to_integral_value():
        raise CellError(BAD_QUANTITY, value=text)
    return int(number)


_GENDERS: dict[str, Gender] = {
    "男": Gender.male, "男性": Gender.male, "先生": Gender.male, "m": Gender.male,
    "male": Gender.male, "man": Gender.male,
    "女": Gender.female, "女性": Gender.female, "小姐": Gender.female, "女士": Gender.female,
    "f": Gender.female, "female": Gender.female, "woman": Gender.female,
    "其他": Gender.other, "other": Gender.other, "o": Gender.other, "x": Gender.other,
}


def parse_gender(text: str) -> Gender:
    gender = _GENDERS.get(_plain(text).casefold())
    if gender is None:
        raise CellError(BAD_GENDER, value=text)
    return gender


_TAG_SEPARATORS = re.compile(r"[,、，;；|]")


def split_tags(text: str) -> list[str]:
    """'VIP、拿鐵, 外帶' → ['VIP', '拿鐵', '外帶'] (comma, 、, full-width comma, semicolon)."""
    seen: list[str] = []
    for part in _TAG_SEPARATORS.split(text):
        tag = part.strip()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


_CHANNELS: dict[str, str] = {
    "門市": "store", "實體": "store", "實體門市": "store", "店面": "store", "店": "store",
    "store": "store", "pos": "store", "offline": "store", "instore": "store",
    "網路": "online", "線上": "online", "網購": "online", "電商": "online", "官網": "online",
    "網店": "online", "online": "online", "web": "online", "ecommerce": "online",
    "shop": "online", "app": "online",
}


def parse_channel(text: str) -> str:
    key = re.sub(r"[\s_\-]+", "", _plain(text).casefold())
    channel = _CHANNELS.get(key)
    if channel is None:
        raise CellError(BAD_CHANNEL, value=text)
    return channel
