"""HTTP API of touchpoint events: batch ingestion, the type catalogue, a customer's timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from omniloop.api.deps import ApiActor, SessionDep, in_unit_of_work
from omniloop.core.db import Session
from omniloop.core.i18n import gettext
from omniloop.core.schemas import json_response
from omniloop.customers import ingest as ingest_service
from omniloop.customers.event_types import EVENT_TYPES
from omniloop.customers.ingest_schemas import (
    MAX_BATCH,
    MAX_PROPERTIES_BYTES,
    EventBatchIn,
    EventOut,
    EventTypeOut,
    IngestOut,
    TimelineOut,
)

router = APIRouter(tags=["events"])

_CATALOGUE = "\n".join(f"| `{t.name}` | {t.channel} | {t.label} |" for t in EVENT_TYPES.values())

INGEST_DESCRIPTION = f"""
Store a batch of 1 to {MAX_BATCH:,} touchpoint events: things customers did, online or in a
store. The batch is all-or-nothing: if any event is invalid, the answer is a 4xx whose
`field` names it (e.g. `events.17.occurred_at`) and nothing is stored.

**Idempotent.** Each event carries your own `id`. An event whose `id` is already stored for
the brand (or came earlier in the same batch) is skipped and counted in `duplicates`, so a
batch whose answer was lost can simply be sent again.

**Who.** Give exactly one of `customer_id` (a customer of this brand; another brand's id is
`404 customer_not_found`) or `identity` (`{{"kind", "value"}}`, kinds `line`, `phone`,
`email`, `pos_card`, `ecommerce`, `device`; phones are normalised to E.164, default region
TW). An identity seen for the first time gets a new anonymous profile of its own; calling
`POST /api/v1/customers/identify` with it and a person's other identities joins it to the
person later. Ingestion itself never merges profiles. An event keeps the profile it arrived
on; timelines follow merges to the surviving profile.

**Where.** `channel` is `online` or `offline` (defaults to the catalogue's; required for
custom types) and `source` says which one (line, web, pos, email, ad, ...). `store_id` or
`store_code` must name a store of the brand that the key may see (a store-bound key: only
its store). `campaign_id` is optional.

**When.** `occurred_at` is ISO 8601 with a time zone (`2026-11-25T14:03:00+08:00`); a time
without one is refused, and so is one more than 5 minutes in the future.

`properties` is a JSON object of at most {MAX_PROPERTIES_BYTES:,} bytes.

**Event types.** Use the catalogue below (`GET /api/v1/events/types`) where it fits:
analytics rely on these meanings. Any other lower-case snake_case name (2–48 characters) is
stored as a custom type.

| type | usual channel | meaning |
|---|---|---|
{_CATALOGUE}

Needs the `ingest` scope.
"""


async def batch_body(request: Request) -> EventBatchIn:
    """The request body, parsed and validated by Pydantic in one pass.

    FastAPI would first build the whole document as Python objects with `json.loads` and
    then validate those; Pydantic reading the JSON itself is much cheaper for 1,000 events
    (see docs/benchmarks.md). Errors take the same path as FastAPI's own, so they look alike.
    """
    try:
        return EventBatchIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors(include_url=False)]) from None


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` references replaced by the definitions themselves."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return dict(resolve(schema))


# The body is read by `batch_body`, so OpenAPI is told its schema explicitly.
_REQUEST_BODY = {"required": True, "content": {"application/json": {
    "schema": _inlined(EventBatchIn.model_json_schema())}}}


@router.post("/events", name="ingest", summary="Ingest a batch of events",
             status_code=status.HTTP_201_CREATED, response_model=IngestOut,
             description=INGEST_DESCRIPTION, openapi_extra={"requestBody": _REQUEST_BODY})
async def ingest(actor: ApiActor, body: Annotated[EventBatchIn, Depends(batch_body)],
                 request: Request) -> Response:
    # Dependencies resolve in this order: the key is checked before the body is read.
    def work(session: Session) -> ingest_service.IngestResult:
        return ingest_service.ingest_events(session, actor, body.events)

    result = await in_unit_of_work(request, work)
    answer = IngestOut(accepted=result.accepted, duplicates=result.duplicates,
                       created_profiles=result.created_profiles)
    return json_response(answer, status.HTTP_201_CREATED)


@router.get("/events/types", name="types", summary="The event type catalogue",
            response_model=list[EventTypeOut])
def types(actor: ApiActor) -> list[EventTypeOut]:
    """The standard event types, with their usual channel and a label in the request's
    language. Other snake_case names are accepted as custom types."""
    return [EventTypeOut(name=t.name, label=gettext(t.label), channel=t.channel)
            for t in EVENT_TYPES.values()]


@router.get("/customers/{customer_id}/events", name="timeline",
            summary="A customer's events", response_model=TimelineOut)
def timeline(customer_id: str, actor: ApiActor, session: SessionDep,
             limit: Annotated[int, Query(ge=1, le=ingest_service.TIMELINE_MAX)] = 50,
             before: datetime | None = None, before_id: str | None = None) -> TimelineOut:
    """Newest first: the events of the customer's surviving profile and of every profile
    merged into it. For the next page pass `next_before` and `next_before_id` as `before`
    and `before_id`."""
    customer, events = ingest_service.timeline(session, actor, customer_id, limit=limit,
                                               before=before, before_id=before_id)
    last = events[-1] if len(events) == limit else None
    return TimelineOut(customer_id=customer.id,
                       events=[EventOut.model_validate(e) for e in events],
                       next_before=last.occurred_at if last else None,
                       next_before_id=last.id if last else None)
