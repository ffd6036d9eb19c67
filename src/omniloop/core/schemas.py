"""Base classes for request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator

from omniloop.core.clock import as_utc

# A timestamp answered in UTC with its offset: SQLite hands stored times back without one
# (every time is stored in UTC), PostgreSQL with it; response fields use this type.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PatchModel(RequestModel):
    """Partial updates: a field left out keeps its value; `null` is refused unless the field
    is listed in `nullable`, where it means "clear this value"."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value
