"""Request and response bodies of event ingestion and the timeline."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import AwareDatetime, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # typing.TypedDict needs 3.12 for Pydantic

from omniloop.core.schemas import RequestModel, ResponseModel, UtcDatetime
from omniloop.customers.models import IdentityKind

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 8 * 1024

# Events are TypedDicts rather than models: a batch holds up to 1,000 of them, and Pydantic
# validates plain dicts several times faster than it builds model instances. The rules are
# those of RequestModel: unknown fields are refused and strings stripped.
#
# The identity's kind is kept as its value (use_enum_values: the same validation and errors
# as the enum), so that an identity holds no object the garbage collector tracks: 1,000 of
# them alive through a batch got promoted to the oldest generation and brought on full
# collections of the whole process (see customers.ingest).
_EVENT_CONFIG = ConfigDict(extra="forbid", str_strip_whitespace=True)


@with_config(ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=True))
class EventIdentityIn(TypedDict):
    kind: IdentityKind  # as its value (see above)
    value: Annotated[str, Field(min_length=1, max_length=254, examples=["0912-345-678"])]


@with_config(_EVENT_CONFIG)
class EventIn(TypedDict):
    """One touchpoint event. Say who did it with exactly one of `customer_id` and `identity`."""

    id: Annotated[str, Field(
        min_length=1, max_length=64,
        description="Your id for this event, unique within the brand: an event whose id is "
                    "already stored is skipped, so a batch can be retried safely.")]
    type: Annotated[str, Field(
        max_length=48, examples=["qr_scan"],
        description="A type of the catalogue (`GET /api/v1/events/types`) or your own name: "
                    "lower-case letters, digits and '_', 2–48 characters, starting with a "
                    "letter (checked by the service, with `customers.event_types`).")]
    channel: NotRequired[Annotated[Literal["online", "offline"] | None, Field(
        description="Defaults to the catalogue's channel; required for custom types.")]]
    source: NotRequired[Annotated[str, Field(
        max_length=32, description="Where it happened: line, web, pos, email, ad, ...")]]
    occurred_at: Annotated[AwareDatetime, Field(
        description="When it happened: ISO 8601 with a time zone, at most 5 minutes ahead.")]
    store_id: NotRequired[Annotated[str | None, Field(max_length=26)]]
    store_code: NotRequired[Annotated[str | None, Field(
        max_length=32, description="Instead of `store_id`: the store's code.")]]
    campaign_id: NotRequired[Annotated[str | None, Field(max_length=26)]]
    properties: NotRequired[Annotated[dict[str, Any], Field(
        description=f"Anything else, as a JSON object of at most {MAX_PROPERTIES_BYTES:,} "
                    "bytes.")]]
    customer_id: NotRequired[Annotated[str | None, Field(
        max_length=26, description="A customer of this brand.")]]
    identity: NotRequired[Annotated[EventIdentityIn | None, Field(
        description="Or an identity; one seen for the first time gets a new anonymous "
                    "profile (identify joins it to a person later).")]]


class EventBatchIn(RequestModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class IngestOut(ResponseModel):
    accepted: int = Field(description="Events stored by this call.")
    duplicates: int = Field(description="Events skipped: their id was stored already, or "
                                        "came earlier in this batch.")
    created_profiles: int = Field(description="Anonymous profiles created for identities "
                                              "seen for the first time.")


class EventTypeOut(ResponseModel):
    name: str
    label: str
    channel: str


class EventOut(ResponseModel):
    id: str
    client_event_id: str
    customer_id: str | None = Field(description="The profile the event arrived on (it may "
                                                "have been merged into the survivor since).")
    type: str
    channel: str
    source: str
    store_id: str | None
    campaign_id: str | None
    properties: dict[str, Any]
    occurred_at: UtcDatetime
    received_at: UtcDatetime


class TimelineOut(ResponseModel):
    customer_id: str = Field(description="The surviving profile.")
    events: list[EventOut]
    next_before: UtcDatetime | None = Field(
        default=None, description="For the next page, pass as `before` (with `before_id`).")
    next_before_id: str | None = None
