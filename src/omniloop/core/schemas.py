"""Base classes for request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator
from starlette.responses import Response

from omniloop.core.clock import as_utc

# A timestamp answered in UTC with its offset: SQLite hands stored times back without one
# (every time is stored in UTC), PostgreSQL with it; response fields use this type.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def json_response(answer: BaseModel, status_code: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """`answer` as FastAPI would send it for a route's `response_model`, for the busy routes
    that serialise their answer themselves (FastAPI would validate it once more first; the
    route keeps `response_model` for the OpenAPI document)."""
    return Response(answer.model_dump_json().encode(), status_code=status_code,
                    headers=headers, media_type="application/json")


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
