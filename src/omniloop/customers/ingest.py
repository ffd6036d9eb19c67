"""Batch ingestion of touchpoint events from other systems, and a customer's timeline.

A batch is checked as a whole before anything is written: one bad event rejects the batch
with an error naming its field (`events.17.occurred_at`), and nothing is stored.

Then it is written with a handful of set-based statements, whatever its size: one SELECT of
the client event ids already stored, one SELECT of known identities per identity kind, one
multi-row INSERT each for the new anonymous profiles and their identities, and one
multi-row INSERT of the events. The INSERTs are SQLAlchemy Core statements compiled once for
the session's dialect and run as one DBAPI `executemany` with plain tuples: no ORM objects,
and none of Core's per-row parameter handling, which cost more than the database itself
(see docs/benchmarks.md).

Idempotency: an event whose client id is stored already for this tenant, or came earlier in
the same batch, is skipped and counted as a duplicate. Concurrency (PostgreSQL): two
transactions racing to store the same client id or create the same new identity both try;
the unique constraints let one win, and the loser's savepoint is rolled back and the batch
looked at again, so it skips the winner's events and attaches to the winner's profiles. Rows
are inserted in key order, so two such writers never wait on each other in a cycle. SQLite
has one writer at a time and cannot race, so it writes without the savepoint.

An event keeps the profile it arrived on: for an identity, the profile the identity belongs
to at that moment (identities move to the survivor when profiles merge); for a customer id,
that id as given. Ingestion never merges profiles: `customers.identify` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, cast

from pydantic_core import to_json
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    String,
    Table,
    TextClause,
    and_,
    any_,
    bindparam,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session, datetime_to_db, insert_many
from omniloop.core.errors import Conflict
from omniloop.core.ids import new_ids
from omniloop.core.prepared import Prepared
from omniloop.customers.errors import (
    BatchSizeInvalid,
    CustomerErased,
    CustomerNotFound,
    EventChannelRequired,
    EventInFuture,
    EventPropertiesTooLarge,
    EventStoreAmbiguous,
    EventTypeInvalid,
    EventWhoInvalid,
    InvalidIdentity,
)
from omniloop.customers.event_types import EVENT_TYPES, is_valid_type
from omniloop.customers.identify import normalized
from omniloop.customers.ingest_schemas import MAX_BATCH, MAX_PROPERTIES_BYTES, EventIn
from omniloop.customers.models import Customer, CustomerIdentity, Event, IdentityKind
from omniloop.customers.profiles import get_customer, profile_ids
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.errors import StoreNotFound
from omniloop.tenancy.models import Store

FUTURE_TOLERANCE = timedelta(minutes=5)
TIMELINE_MAX = 500
_RACE_RETRIES = 10
_DEADLOCK = "40P01"  # SQLSTATE deadlock_detected (PostgreSQL)

_CUSTOMERS = cast(Table, Customer.__table__)
_IDENTITIES = cast(Table, CustomerIdentity.__table__)
_EVENTS = cast(Table, Event.__table__)

Pair = tuple[str, str]  # (kind, normalised value); the kind as its plain value, which
# hashes in C (an enum member hashes in Python, and pairs are hashed several times each)
_KINDS: dict[str, IdentityKind] = {kind.value: kind for kind in IdentityKind}

# The events' columns as the bulk insert takes them (core.db.insert_many): ingestion and
# the loops recorder build their rows in this order.
EVENT_COLUMNS = ("tenant_id", "id", "client_event_id", "customer_id", "type", "channel",
                  "source", "store_id", "campaign_id", "properties", "occurred_at",
                  "received_at")
# One event as `customers.events.record_event` would store it, for the hot paths that
# record one whose client id names a row they have just written (an order, a redemption),
# so nothing can hold it yet and no look-up is needed.
INSERT_EVENT = Prepared(insert(_EVENTS), columns=EVENT_COLUMNS)
_CUSTOMER_COLUMNS = ("tenant_id", "id", "tags", "created_at", "updated_at")
_IDENTITY_COLUMNS = ("tenant_id", "id", "customer_id", "kind", "value", "source", "created_at")


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    created_profiles: int


class _Checked(NamedTuple):
    """One event of the batch, validated and normalised, not yet written.

    A tuple rather than a dataclass: a thousand of them live through several garbage
    collections per batch, and the collector stops tracking tuples of plain values."""

    position: int  # in the batch, for error fields
    client_id: str
    type: str
    channel: str
    source: str
    occurred_at: datetime  # UTC
    store: tuple[str, str] | None  # ("id" | "code", value)
    campaign_id: str | None
    properties: str  # serialised JSON
    customer_id: str | None
    identity: Pair | None


def ingest_events(session: Session, actor: Actor, events: Sequence[EventIn]) -> IngestResult:
    """Store a batch of events (validated by `EventBatchIn`); see the module's docstring.

    Each event's `occurred_at` is left in UTC (the same instant) in `events`."""
    actor.require(Permission.ingest)
    if not 1 <= len(events) <= MAX_BATCH:
        raise BatchSizeInvalid(field="events", limit=MAX_BATCH)
    now = utcnow()
    # Everything that needs no database first, so that SQLite's write lock, taken by the
    # first statement, is held only while writing.
    latest = now + FUTURE_TOLERANCE
    checked = [_check(index, event, latest) for index, event in enumerate(events)]
    stores = _resolve_stores(session, actor, checked)
    _check_customers(session, actor.tenant_id, checked)
    if session.connection().dialect.name == "sqlite":
        # No race to retry on SQLite: it has one writer at a time, and a transaction whose
        # snapshot is stale cannot write (SQLITE_BUSY_SNAPSHOT), so nothing can store these
        # ids or identities between the look-ups below and the INSERTs. Hence no savepoint
        # either: inside one, SQLite copies each page it changes to a sub-journal, which made
        # inserting the events about 1.7 times as costly (docs/benchmarks.md).
        return _write(session, actor.tenant_id, checked, stores, now)
    for _ in range(_RACE_RETRIES):
        try:
            with session.begin_nested():
                return _write(session, actor.tenant_id, checked, stores, now)
        except IntegrityError:
            continue  # another transaction stored some of these meanwhile: look again
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _DEADLOCK:
                raise
    raise Conflict()


def _check(index: int, event: EventIn, latest: datetime) -> _Checked:
    """What the request body's schema cannot say alone; errors name the field. `latest`: the
    latest acceptable occurred_at."""
    customer_id = event.get("customer_id")
    who = event.get("identity")
    if (customer_id is None) == (who is None):
        raise EventWhoInvalid(field=f"events.{index}.customer_id")
    type_ = event["type"]
    # The name rule is checked here rather than in the schema, where a Python validator costs
    # 5× more. The catalogue's names follow it.
    standard = EVENT_TYPES.get(type_)
    if standard is None and not is_valid_type(type_):
        raise EventTypeInvalid(field=f"events.{index}.type", type=type_)
    channel: str | None = event.get("channel")
    if channel is None:
        if standard is None:
            raise EventChannelRequired(field=f"events.{index}.channel", type=type_)
        channel = standard.channel
    occurred_at = event["occurred_at"].astimezone(UTC)
    # Kept back in UTC (the same instant): the parsed offset, an object the garbage collector
    # tracks, then goes now rather than after the batch. With identities that hold no such
    # object either (ingest_schemas), a batch leaves the collector a few thousand fewer
    # objects to promote: full collections of the whole process came 3 times less often,
    # about 4 ms less CPU per 1,000 events (docs/benchmarks.md).
    event["occurred_at"] = occurred_at
    if occurred_at > latest:
        raise EventInFuture(field=f"events.{index}.occurred_at")
    properties = event.get("properties")
    if properties:
        serialised = to_json(properties)  # UTF-8 JSON, several times faster than json.dumps
        if len(serialised) > MAX_PROPERTIES_BYTES:
            raise EventPropertiesTooLarge(field=f"events.{index}.properties",
                                          limit=MAX_PROPERTIES_BYTES)
        properties_json = serialised.decode()
    else:
        properties_json = "{}"
    store: tuple[str, str] | None = None
    store_id, store_code = event.get("store_id"), event.get("store_code")
    if store_id is not None and store_code is not None:
        raise EventStoreAmbiguous(field=f"events.{index}.store_code")
    if store_id is not None:
        store = ("id", store_id)
    elif store_code is not None:
        store = ("code", store_code.upper())
    identity: Pair | None = None
    if who is not None:
        kind = who["kind"]  # the kind's value (see ingest_schemas)
        try:
            identity = (kind, normalized(_KINDS[kind], who["value"]))
        except InvalidIdentity as exc:
            exc.field = f"events.{index}.identity.value"
            raise
    return _Checked(index, event["id"], type_, channel, event.get("source", ""), occurred_at,
                    store, event.get("campaign_id"), properties_json, customer_id, identity)


def _resolve_stores(session: Session, actor: Actor,
                    checked: list[_Checked]) -> dict[tuple[str, str], str]:
    """Store references → store ids, each a store of the tenant that the actor may see."""
    refs = {c.store for c in checked if c.store is not None}
    if not refs:
        return {}
    actor.require(Permission.stores_read)
    ids = {value for how, value in refs if how == "id"}
    codes = {value for how, value in refs if how == "code"}
    rows = session.execute(select(Store.id, Store.code).where(
        Store.tenant_id == actor.tenant_id,
        or_(Store.id.in_(ids), Store.code.in_(codes)))).all()
    found: dict[tuple[str, str], str] = {}
    for store_id, code in rows:
        if actor.sees_store(store_id):
            found[("id", store_id)] = store_id
            found[("code", code)] = store_id
    for c in checked:
        if c.store is not None and c.store not in found:
            raise StoreNotFound(field=f"events.{c.position}.store_{c.store[0]}")
    return found


def _check_customers(session: Session, tenant_id: str, checked: list[_Checked]) -> None:
    """Customer ids must be the tenant's, and not erased: new events would bring back
    personal data that the erasure removed."""
    ids = {c.customer_id for c in checked if c.customer_id is not None}
    if not ids:
        return
    known = dict(session.execute(select(Customer.id, Customer.erased_at).where(
        Customer.tenant_id == tenant_id, Customer.id.in_(ids))).all())
    for c in checked:
        if c.customer_id is None:
            continue
        if c.customer_id not in known:
            raise CustomerNotFound(field=f"events.{c.position}.customer_id")
        if known[c.customer_id] is not None:
            raise CustomerErased(field=f"events.{c.position}.customer_id")


def _write(session: Session, tenant_id: str, checked: list[_Checked],
           stores: dict[tuple[str, str], str], now: datetime) -> IngestResult:
    connection = session.connection()
    lookups = _lookups(connection.dialect.name)
    stored = set(connection.scalars(lookups.stored_ids, {
        "tenant_id": tenant_id, "ids": lookups.values([c.client_id for c in checked])}))
    fresh: list[_Checked] = []
    for c in checked:
        if c.client_id not in stored:
            stored.add(c.client_id)  # a later event with this id in the batch is a duplicate
            fresh.append(c)
    fresh.sort(key=lambda c: c.client_id)
    to_db = datetime_to_db(connection.dialect)
    received_at = to_db(now)
    owners, created = _profiles_for(session, tenant_id, fresh, received_at)
    ids = new_ids(len(fresh))
    insert_many(session, _EVENTS, EVENT_COLUMNS, [
        (tenant_id, ids[n], c.client_id,
         c.customer_id if c.identity is None else owners[c.identity],
         c.type, c.channel, c.source, stores[c.store] if c.store is not None else None,
         c.campaign_id, c.properties, to_db(c.occurred_at), received_at)
        for n, c in enumerate(fresh)])
    return IngestResult(accepted=len(fresh), duplicates=len(checked) - len(fresh),
                        created_profiles=created)


def _profiles_for(session: Session, tenant_id: str, fresh: list[_Checked],
                  now: Any) -> tuple[dict[Pair, str], int]:
    """The profile of each identity the events name; an anonymous one for each new identity.

    `now` is already in the database driver's form."""
    sources: dict[Pair, str] = {}
    for c in fresh:
        if c.identity is not None:
            sources.setdefault(c.identity, c.source)
    by_kind: dict[str, list[str]] = {}
    for kind, value in sources:
        by_kind.setdefault(kind, []).append(value)
    owners: dict[Pair, str] = {}
    for kind, values in by_kind.items():
        for value, customer_id in identity_owners(session, tenant_id, kind, values).items():
            owners[(kind, value)] = customer_id
    new_pairs = sorted(pair for pair in sources if pair not in owners)
    if not new_pairs:
        return owners, 0
    ids = new_ids(2 * len(new_pairs))
    customers: list[tuple[Any, ...]] = []
    identities: list[tuple[Any, ...]] = []
    for n, (kind, value) in enumerate(new_pairs):
        customer_id = ids[2 * n]
        owners[(kind, value)] = customer_id
        customers.append((tenant_id, customer_id, "[]", now, now))
        identities.append((tenant_id, ids[2 * n + 1], customer_id, kind, value,
                           sources[(kind, value)] or "event", now))
    insert_many(session, _CUSTOMERS, _CUSTOMER_COLUMNS, customers)
    insert_many(session, _IDENTITIES, _IDENTITY_COLUMNS, identities)
    return owners, len(new_pairs)


# --- Looking up 1,000 values at once --------------------------------------------------------
#
# `column IN (?, ?, …)` with 1,000 values costs SQLAlchemy more time to render, every time,
# than the database needs to answer it. The list goes as one parameter instead: on
# PostgreSQL an array compared with = ANY; on SQLite a JSON array read with json_each and
# joined to the table with CROSS JOIN, which makes SQLite walk the list and look each value up
# in the unique index (tenant_id, client_event_id) / (tenant_id, kind, value): about three
# times faster than `IN (SELECT value FROM json_each(?))`, for which it first sorts the list
# into a temporary index. (A plain JOIN lets the planner scan the table's index instead.)

@dataclass(frozen=True)
class _Lookups:
    stored_ids: Select[str] | TextClause
    known_identities: Select[str, str] | TextClause
    values: Callable[[list[str]], Any]  # the list as the parameter the statements expect


def identity_owners(session: Session, tenant_id: str, kind: str,
                    values: list[str]) -> dict[str, str]:
    """The profile each known value of this identity kind belongs to, in one statement
    with one parameter however many values there are (an expanding IN of a thousand values
    costs SQLAlchemy more than SQLite's answer)."""
    connection = session.connection()
    lookups = _lookups(connection.dialect.name)
    rows = connection.execute(lookups.known_identities, {
        "tenant_id": tenant_id, "kind": kind, "values": lookups.values(values)})
    return {row[0]: row[1] for row in rows}


def _one_of(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return cast(ColumnElement[bool], column == any_(bindparam(name, type_=ARRAY(String))))
    return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))


@lru_cache(maxsize=8)
def _lookups(dialect: str) -> _Lookups:
    if dialect == "sqlite":
        return _Lookups(
            stored_ids=text(
                "SELECT events.client_event_id FROM json_each(:ids) AS wanted "
                "CROSS JOIN events WHERE events.tenant_id = :tenant_id "
                "AND events.client_event_id = wanted.value"),
            known_identities=text(
                "SELECT customer_identities.value, customer_identities.customer_id "
                "FROM json_each(:values) AS wanted CROSS JOIN customer_identities "
                "WHERE customer_identities.tenant_id = :tenant_id "
                "AND customer_identities.kind = :kind "
                "AND customer_identities.value = wanted.value"),
            values=json.dumps)
    return _Lookups(
        stored_ids=select(Event.client_event_id).where(
            Event.tenant_id == bindparam("tenant_id"),
            _one_of(Event.client_event_id, "ids", dialect)),
        known_identities=select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
            CustomerIdentity.tenant_id == bindparam("tenant_id"),
            CustomerIdentity.kind == bindparam("kind"),
            _one_of(CustomerIdentity.value, "values", dialect)),
        values=list)


def timeline(session: Session, actor: Actor, customer_id: str, limit: int = 50,
             before: datetime | None = None, before_id: str | None = None
             ) -> tuple[Customer, list[Event]]:
    """The events of a customer's surviving profile and of every profile merged into it,
    newest first. Page with the last event's (`occurred_at`, `id`) as (`before`,
    `before_id`): events sharing one time are then neither skipped nor repeated."""
    customer = get_customer(session, actor, customer_id)
    ids = profile_ids(session, actor.tenant_id, customer.id)
    query = select(Event).where(Event.tenant_id == actor.tenant_id,
                                Event.customer_id.in_(ids))
    if actor.store_ids is not None:
        # Like orders: a store-bound key, a cashier or a manager sees what happened in their
        # stores, not the person's activity elsewhere.
        query = query.where(Event.store_id.in_(actor.store_ids))
    if before is not None:
        before = as_utc(before)
        if before_id is not None:
            query = query.where(or_(Event.occurred_at < before,
                                    and_(Event.occurred_at == before, Event.id < before_id)))
        else:
            query = query.where(Event.occurred_at < before)
    query = query.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(
        max(1, min(limit, TIMELINE_MAX)))
    return customer, list(session.scalars(query))
