"""Time: stored in UTC, shown and reasoned about in the tenant's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Timestamps read back from SQLite are naive; they were written in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def aware(value: datetime, timezone: str) -> datetime:
    """A client's timestamp in UTC; without an offset it is read in the brand's time zone.

    Everything is stored in UTC: SQLite keeps a timestamp's wall time and drops its offset,
    so a value must be converted before it is written.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return as_utc(value)


def is_valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return name in available_timezones()


def to_local(value: datetime, timezone: str) -> datetime:
    return as_utc(value).astimezone(ZoneInfo(timezone))
