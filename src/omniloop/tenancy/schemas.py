"""Request and response bodies of the tenancy module."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, field_validator, model_validator

from omniloop.core.schemas import PatchModel, RequestModel, ResponseModel
from omniloop.tenancy.models import ApiScope, Role

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _code(value: str) -> str:
    if not _CODE.match(value):
        raise ValueError("use letters, digits, '-' and '_' only")
    return value.upper()


StoreCode = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_code)]


class TimeRange(RequestModel):
    open: str = Field(examples=["07:30"])
    close: str = Field(examples=["21:00"])

    @field_validator("open", "close")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("time must be HH:MM (00:00–24:00)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.close <= self.open:
            raise ValueError("closing time must be after opening time")
        return self


OpeningHours = dict[Weekday, list[TimeRange]]


def parse_day_ranges(text: str) -> list[TimeRange]:
    """'07:30-12:00, 13:00-21:00' → two ranges; '' means closed that day."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.replace("，", ",").split(","))):
        opening, sep, closing = part.replace("–", "-").replace("~", "-").partition("-")
        if not sep:
            raise ValueError(f"'{part}' is not a range like 07:30-21:00")
        ranges.append(TimeRange(open=opening.strip(), close=closing.strip()))
    return ranges


def format_day_ranges(ranges: list[dict[str, str]]) -> str:
    return ", ".join(f"{r['open']}-{r['close']}" for r in ranges)


class StoreFields(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    address: str = Field(default="", max_length=255)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    phone: str = Field(default="", max_length=32)
    opening_hours: OpeningHours = Field(default_factory=dict)
    active: bool = True

    @model_validator(mode="after")
    def _both_coordinates(self) -> StoreFields:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


class StoreCreate(StoreFields):
    code: StoreCode


class StoreUpdate(PatchModel):
    """Partial update: only the fields sent change; coordinates can be cleared together."""

    nullable = frozenset({"latitude", "longitude"})

    name: str | None = Field(default=None, min_length=1, max_length=120)
    address: str | None = Field(default=None, max_length=255)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = Field(default=None, max_length=32)
    opening_hours: OpeningHours | None = None
    active: bool | None = None


class StoreOut(ResponseModel):
    id: str
    code: str
    name: str
    address: str
    latitude: float | None
    longitude: float | None
    phone: str
    opening_hours: dict[str, list[dict[str, str]]]
    active: bool
    created_at: datetime
    updated_at: datetime


class StaffCreate(RequestModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=120)
    password: str = Field(min_length=10, max_length=256)
    role: Role
    store_ids: list[str] = Field(default_factory=list)
    locale: Literal["zh_TW", "en"] | None = None


class StaffUpdate(PatchModel):
    """Partial update; `locale: null` returns the person to the browser's language."""

    nullable = frozenset({"locale"})

    name: str | None = Field(default=None, min_length=1, max_length=120)
    role: Role | None = None
    store_ids: list[str] | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=256)
    locale: Literal["zh_TW", "en"] | None = None


class StaffOut(ResponseModel):
    id: str
    email: str
    name: str
    role: Role
    active: bool
    store_ids: list[str] = Field(default_factory=list)
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    scopes: list[ApiScope] = Field(min_length=1)
    store_id: str | None = None


class ApiKeyOut(ResponseModel):
    id: str
    name: str
    key_prefix: str
    scopes: list[str]
    store_id: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. Shown this once; only a digest is stored.")


class AuditEntryOut(ResponseModel):
    id: str
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str
    action: str
    entity_type: str
    entity_id: str | None
    details: dict[str, object]
    ip: str | None


class TenantOut(ResponseModel):
    id: str
    slug: str
    name: str
    currency: str
    timezone: str
    locale: str


class WhoAmI(ResponseModel):
    tenant: TenantOut
    actor_type: str
    label: str
    scopes: list[str]
    store_ids: list[str] | None
