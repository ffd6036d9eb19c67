"""Request and response bodies of the customers module."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field, field_validator

from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.customers.models import Gender, IdentityKind


class IdentityIn(RequestModel):
    kind: IdentityKind
    value: str = Field(min_length=1, max_length=254, examples=["0912-345-678"])


class Traits(RequestModel):
    """What we know about a person. Only the fields sent are changed."""

    name: str | None = Field(default=None, max_length=120)
    birthday: date | None = None
    gender: Gender | None = None
    home_store_id: str | None = Field(default=None, max_length=26)
    language: Literal["zh_TW", "en"] | None = None
    tags: list[str] | None = Field(default=None, max_length=50,
                                   description="Added to the customer's tags (never removed).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        if tags is None:
            return None
        cleaned = [t.strip() for t in tags]
        if any(not t or len(t) > 40 for t in cleaned):
            raise ValueError("tags are 1–40 characters")
        return cleaned


class IdentifyIn(RequestModel):
    identities: list[IdentityIn] = Field(min_length=1, max_length=20)
    traits: Traits | None = None
    source: str = Field(default="api", max_length=40,
                        description="Where the identification happened: pos, web, line, ...")


class IdentityOut(ResponseModel):
    id: str
    kind: IdentityKind
    value: str
    source: str
    created_at: datetime


class CustomerOut(ResponseModel):
    id: str
    name: str | None
    birthday: date | None
    gender: Gender | None
    home_store_id: str | None
    language: str | None
    tags: list[str]
    identities: list[IdentityOut] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(
        default=None, description="When the personal data was erased; null if it was not.")


class IdentifyOut(ResponseModel):
    customer: CustomerOut
    created: bool = Field(description="A new profile was created for these identities.")
    merged: list[str] = Field(description="Profiles merged into this one by this call.")


class MergeOut(ResponseModel):
    id: str
    survivor_id: str
    merged_id: str
    reason: str
    actor_label: str
    at: datetime
    undone_at: datetime | None
    undone_by: str | None
