"""Orders: ingesting them from POS and e-commerce systems, and reading them.

Ingestion is idempotent by the order's external id. The content of the request (as sent,
with the store resolved and identities normalised) is hashed and kept on the order: a retry
with the same content returns the stored order and writes nothing; the same external id
with other content is a conflict. Two identical requests at once both try to insert; the
unique constraint on (tenant, external id) lets one win, and the loser's savepoint —
including any customer it identified — is rolled back and the winner's order re-read. (On
SQLite that race cannot happen: a write transaction holds the one write lock from its
first statement, so the look-up by external id and the insert see the same database; no
savepoint there, as in identify and event ingestion.)

Ingestion is the hot path of every till, so a new order is written with prepared Core
statements (`core.prepared`: building an ORM query or flushing the unit of work costs more
than SQLite takes to run the statements), and the order and its lines then join the
session as stored rows, exactly as written, without being read back. Retries and
conflicts take the ORM way.

The server computes every amount from the lines (see `pricing`); totals sent by the client
are only checked against it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, String, Table, and_, bindparam, func, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from omniloop.catalog.service import find_product_by_sku
from omniloop.core.clock import aware, utcnow
from omniloop.core.db import Session, stored
from omniloop.core.ids import new_id
from omniloop.core.prepared import Prepared
from omniloop.customers.errors import CustomerErased, CustomerNotFound
from omniloop.customers.identify import Pair, identify_profile, normalize_identities
from omniloop.customers.ingest import INSERT_EVENT
from omniloop.customers.profiles import get_customer, profile_ids
from omniloop.orders import pricing
from omniloop.orders.errors import (
    AmbiguousCustomer,
    AmbiguousStore,
    CurrencyMismatch,
    DiscountTooLarge,
    OrderConflict,
    OrderNotFound,
    PaidInFuture,
    StoreBound,
    StoreNotAllowed,
    StoreRequired,
    TotalMismatch,
    TraitsWithoutIdentities,
)
from omniloop.orders.listeners import order_recorded
from omniloop.orders.models import Order, OrderChannel, OrderLine, OrderStatus, Refund
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.errors import StoreNotFound, TenantNotFound
from omniloop.tenancy.models import Store, Tenant
from omniloop.tenancy.stores import get_store
from omniloop.tenancy.tenants import get_tenant

# How far ahead of the server's clock a payment time may be (a POS clock running fast).
CLOCK_SKEW = timedelta(hours=1)
MAX_PAGE = 500

_ORDERS = cast(Table, Order.__table__)
_LINES = cast(Table, OrderLine.__table__)
_TENANTS = cast(Table, Tenant.__table__)
_STORES = cast(Table, Store.__table__)
# The statements of an ingestion, built once (SQLAlchemy caches their compiled form). What
# an ingestion reads before it writes comes in one statement: the brand's currency and time
# zone, the order's store (by id, by code, or none) and whether the external id is recorded
# (each statement costs SQLAlchemy several times what SQLite takes to answer it).
_STORE_ID_BY_CODE = select(_STORES.c.id).where(
    _STORES.c.tenant_id == bindparam("tenant_id"), _STORES.c.code == bindparam("store_key"))
_STORE_ID_BY_ID = select(_STORES.c.id).where(
    _STORES.c.tenant_id == bindparam("tenant_id"), _STORES.c.id == bindparam("store_key"))
_RECORDED_ID = select(_ORDERS.c.id).where(
    _ORDERS.c.tenant_id == bindparam("tenant_id"),
    _ORDERS.c.external_id == bindparam("external_id"))


def _context_query(store: Select[Any] | None) -> Select[Any]:
    store_column = (store.scalar_subquery() if store is not None
                    else literal(None, String)).label("store_id")
    return select(_TENANTS.c.currency, _TENANTS.c.timezone, store_column,
                  _RECORDED_ID.scalar_subquery().label("recorded_id")
                  ).where(_TENANTS.c.id == bindparam("tenant_id"))


_CONTEXT = {"none": Prepared(_context_query(None)),
            "code": Prepared(_context_query(_STORE_ID_BY_CODE)),
            "id": Prepared(_context_query(_STORE_ID_BY_ID))}
_ORDER_COLUMNS = ("tenant_id", "id", "external_id", "source", "channel", "store_id",
                  "customer_id", "currency", "subtotal_minor", "discount_minor", "total_minor",
                  "refunded_minor", "status", "paid_at", "content_digest", "created_at",
                  "updated_at")
_LINE_COLUMNS = ("tenant_id", "id", "order_id", "position", "sku", "name", "category",
                 "quantity", "unit_price_minor", "discount_minor", "total_minor", "net_minor",
                 "refunded_quantity")
_INSERT_ORDER = Prepared(insert(_ORDERS), columns=_ORDER_COLUMNS)
_INSERT_LINES = Prepared(insert(_LINES), columns=_LINE_COLUMNS)


def require_write(actor: Actor) -> None:
    """Recording orders and refunds: POS keys and cashiers (`pos`) or integrations
    (`ingest`)."""
    if not (actor.can(Permission.ingest) or actor.can(Permission.pos_use)):
        actor.require(Permission.ingest)


def require_read(actor: Actor) -> None:
    """Orders are customer data: whoever may read customers may read orders."""
    actor.require(Permission.customers_read)


@dataclass(frozen=True)
class PricedLine:
    sku: str
    name: str | None
    category: str | None
    quantity: int
    unit_price_minor: int
    discount_minor: int
    total_minor: int
    net_minor: int


@dataclass(frozen=True)
class Priced:
    lines: list[PricedLine]
    subtotal_minor: int
    discount_minor: int
    total_minor: int


def price(data: OrderIn) -> Priced:
    """Every amount of the order from its lines; errors name the field that does not add up."""
    totals: list[int] = []
    for index, line in enumerate(data.lines):
        gross = line.quantity * line.unit_price_minor
        if line.discount_minor > gross:
            raise DiscountTooLarge(field=f"lines.{index}.discount_minor",
                                   discount=line.discount_minor, amount=gross)
        total = pricing.line_total(line.quantity, line.unit_price_minor, line.discount_minor)
        if line.total_minor is not None and line.total_minor != total:
            raise TotalMismatch(field=f"lines.{index}.total_minor", given=line.total_minor,
                                computed=total)
        totals.append(total)
    subtotal = sum(totals)
    if data.discount_minor > subtotal:
        raise DiscountTooLarge(field="discount_minor", discount=data.discount_minor,
                               amount=subtotal)
    total = subtotal - data.discount_minor
    if data.total_minor is not None and data.total_minor != total:
        raise TotalMismatch(field="total_minor", given=data.total_minor, computed=total)
    nets = pricing.net_amounts(totals, data.discount_minor)
    lines = [PricedLine(sku=line.sku, name=line.name, category=line.category,
                        quantity=line.quantity, unit_price_minor=line.unit_price_minor,
                        discount_minor=line.discount_minor, total_minor=line_total,
                        net_minor=net)
             for line, line_total, net in zip(data.lines, totals, nets, strict=True)]
    return Priced(lines=lines, subtotal_minor=subtotal, discount_minor=data.discount_minor,
                  total_minor=total)


@dataclass(frozen=True)
class _Context:
    """What an ingestion reads before it writes (see `_CONTEXT`)."""

    currency: str
    timezone: str
    store_id: str | None  # the store named by store_id / store_code, if it exists
    recorded: bool  # an order with this external id exists


def _read_context(session: Session, actor: Actor, data: OrderIn) -> _Context:
    if data.store_id is not None and data.store_code is not None:
        kind, key = "none", None  # refused as ambiguous before any store is looked at
    elif data.store_id is not None:
        kind, key = "id", data.store_id
    elif data.store_code is not None:
        kind, key = "code", data.store_code.strip().upper()
    else:
        kind, key = "none", None
    params: dict[str, Any] = {"tenant_id": actor.tenant_id, "external_id": data.external_id}
    if key is not None:
        params["store_key"] = key
    row = _CONTEXT[kind].first(session, params)
    if row is None:
        raise TenantNotFound()
    currency, timezone, store_id, recorded_id = row
    return _Context(currency=str(currency), timezone=str(timezone), store_id=store_id,
                    recorded=recorded_id is not None)


def _find_store_id(actor: Actor, data: OrderIn, context: _Context) -> str | None:
    """The order's store id, as `stores.get_store` / `get_store_by_code` check it (the same
    permission and visibility, the same error)."""
    if data.store_id is None and data.store_code is None:
        return None
    actor.require(Permission.stores_read)
    found = context.store_id
    if found is None or not actor.sees_store(found):
        raise StoreNotFound()
    return found


def _resolve_store(actor: Actor, data: OrderIn,
                   context: _Context) -> tuple[OrderChannel, str | None]:
    """The order's channel and store id; errors name the field."""
    if data.store_id is not None and data.store_code is not None:
        raise AmbiguousStore(field="store_code")
    field = "store_id" if data.store_id is not None else "store_code"
    try:
        store = _find_store_id(actor, data, context)
    except StoreNotFound as exc:
        exc.field = field
        raise
    channel = data.channel or (OrderChannel.store if store is not None else OrderChannel.online)
    if channel is OrderChannel.online and store is not None:
        raise StoreNotAllowed(field=field)
    if store is None and actor.store_ids is not None:
        # A store-bound actor could not read an order outside its stores: refuse to write one.
        raise StoreBound(field="store_id")
    if channel is OrderChannel.store and store is None:
        raise StoreRequired(field="store_id")
    return channel, store


def _digest(data: OrderIn, channel: OrderChannel, store_id: str | None, pairs: list[Pair],
            paid_at: datetime) -> str:
    """What makes two requests the same order. Traits are not part of it: they describe the
    customer, not the purchase."""
    content: dict[str, Any] = {
        "source": data.source,
        "channel": channel.value,
        "store_id": store_id,
        "customer_id": data.customer_id,
        "identities": sorted([kind.value, value] for kind, value in pairs),
        "lines": [[line.sku, line.name, line.category, line.quantity, line.unit_price_minor,
                   line.discount_minor] for line in data.lines],
        "discount_minor": data.discount_minor,
        "paid_at": paid_at.isoformat(),
    }
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _with_details(query: Select[Order]) -> Select[Order]:
    return query.options(selectinload(Order.lines),
                         selectinload(Order.refunds).selectinload(Refund.lines)
                         ).execution_options(populate_existing=True)


def _find(session: Session, tenant_id: str, external_id: str) -> Order | None:
    return session.scalar(_with_details(select(Order).where(
        Order.tenant_id == tenant_id, Order.external_id == external_id)))


def _replay(existing: Order, digest: str, external_id: str) -> tuple[Order, bool]:
    if existing.content_digest != digest:
        raise OrderConflict(field="external_id", external_id=external_id)
    return existing, False


def _customer_id(session: Session, actor: Actor, data: OrderIn) -> str | None:
    if data.customer_id is not None:
        try:
            customer = get_customer(session, actor, data.customer_id)
        except CustomerNotFound as exc:
            exc.field = "customer_id"
            raise
        if customer.erased_at is not None:  # as event ingestion: no new data on an erased person
            raise CustomerErased(field="customer_id")
        return customer.id
    if data.identities:
        # The profile's id is all an order needs: identify_profile spares loading the
        # Customer as an ORM object (what `identify` adds on top).
        return identify_profile(session, actor, data.identities, data.traits,
                                source=data.source).customer_id
    return None


def _fill_from_catalogue(session: Session, actor: Actor,
                         lines: list[PricedLine]) -> list[tuple[str, str]]:
    """(name, category) per line: as sent, else the catalogue's, else the SKU and none."""
    products = {sku: find_product_by_sku(session, actor, sku)
                for sku in {line.sku for line in lines
                            if line.name is None or line.category is None}}
    filled: list[tuple[str, str]] = []
    for line in lines:
        product = products.get(line.sku)
        name = line.name or (product.name if product is not None else line.sku)
        category = line.category if line.category is not None else (
            product.category if product is not None else "")
        filled.append((name, category))
    return filled


def ingest_order(session: Session, actor: Actor, data: OrderIn) -> tuple[Order, bool]:
    """Record an order, or return the one already recorded under its external id.

    Returns (order, created). Every check runs before anything is written; an order is
    recorded together with its `purchase` event.
    """
    require_write(actor)
    session.flush()  # the Core statements below must see the caller's pending ORM changes
    context = _read_context(session, actor, data)
    currency, timezone = context.currency, context.timezone
    if data.currency is not None and data.currency.upper() != currency:
        raise CurrencyMismatch(field="currency", currency=currency)
    paid_at = aware(data.paid_at, timezone)
    if paid_at > utcnow() + CLOCK_SKEW:
        raise PaidInFuture(field="paid_at")
    priced = price(data)
    if data.customer_id is not None and data.identities:
        raise AmbiguousCustomer(field="customer_id")
    if data.traits is not None and not data.identities:
        raise TraitsWithoutIdentities(field="traits")
    channel, store_id = _resolve_store(actor, data, context)
    pairs = normalize_identities(data.identities)
    digest = _digest(data, channel, store_id, pairs, paid_at)

    if context.recorded:
        existing = _find(session, actor.tenant_id, data.external_id)
        assert existing is not None  # the same transaction just read it
        return _replay(existing, digest, data.external_id)
    # PostgreSQL: a concurrent retry may insert the same external id meanwhile; the savepoint
    # takes back this attempt's writes (its customer too). SQLite cannot race (see above).
    racing = session.connection().dialect.name != "sqlite"
    try:
        with session.begin_nested() if racing else nullcontext():
            order = _insert(session, actor, data, priced, channel, store_id, paid_at, digest,
                            currency)
    except IntegrityError:
        if not racing:
            raise
        # The same external id was recorded meanwhile (a concurrent retry): answer with it.
        existing = _find(session, actor.tenant_id, data.external_id)
        if existing is None:
            raise
        return _replay(existing, digest, data.external_id)
    order_recorded(session, actor, order)
    return order, True


def _insert(session: Session, actor: Actor, data: OrderIn, priced: Priced,
            channel: OrderChannel, store_id: str | None, paid_at: datetime, digest: str,
            currency: str) -> Order:
    """Write the order, its lines and its `purchase` event; return the order as an ORM
    object as stored, to be read only (lines loaded, no refunds; in no session)."""
    customer_id = _customer_id(session, actor, data)
    names = _fill_from_catalogue(session, actor, priced.lines)
    session.flush()  # identify may have left ORM changes (a merge): write them first
    tenant_id, now = actor.tenant_id, utcnow()
    values: dict[str, Any] = {
        "tenant_id": tenant_id, "id": new_id(), "external_id": data.external_id,
        "source": data.source, "channel": channel, "store_id": store_id,
        "customer_id": customer_id, "currency": currency,
        "subtotal_minor": priced.subtotal_minor, "discount_minor": priced.discount_minor,
        "total_minor": priced.total_minor, "refunded_minor": 0, "status": OrderStatus.paid,
        "paid_at": paid_at, "content_digest": digest, "created_at": now, "updated_at": now}
    lines = [{"tenant_id": tenant_id, "id": new_id(), "order_id": values["id"],
              "position": position, "sku": line.sku, "name": name, "category": category,
              "quantity": line.quantity, "unit_price_minor": line.unit_price_minor,
              "discount_minor": line.discount_minor, "total_minor": line.total_minor,
              "net_minor": line.net_minor, "refunded_quantity": 0}
             for position, (line, (name, category))
             in enumerate(zip(priced.lines, names, strict=True), start=1)]
    _INSERT_ORDER.run(session, values)
    _INSERT_LINES.run_many(session, lines)
    # The purchase event, as `customers.events.record_event` would store it, without its
    # look-up first: its client event id names this new order, so no event can hold it yet
    # (and the unique constraint would refuse a second one anyway).
    INSERT_EVENT.run(session, {
        "tenant_id": tenant_id, "id": new_id(), "client_event_id": f"order:{values['id']}",
        "type": "purchase", "channel": "offline" if store_id is not None else "online",
        "source": data.source, "customer_id": customer_id, "store_id": store_id,
        "campaign_id": None,
        "properties": {"order_id": values["id"], "external_id": data.external_id,
                       "total_minor": priced.total_minor, "currency": currency,
                       "items": sum(line.quantity for line in priced.lines)},
        "occurred_at": paid_at, "received_at": utcnow()})
    # The rows are exactly these values: the objects are made as if read back, without reading
    # them, and left out of the session (adding them cost ~35 µs of the write lock's time,
    # for nothing to flush); a later query of the session reads the rows from the tables.
    stored_lines = [stored(OrderLine, line_values, to_add=False) for line_values in lines]
    # Its collections as loaded: the lines just written, no refunds.
    return stored(Order, {**values, "lines": stored_lines, "refunds": []}, to_add=False)


def _visible(actor: Actor, order: Order) -> bool:
    if actor.store_ids is None:
        return True
    return order.store_id is not None and order.store_id in actor.store_ids


def load_order(session: Session, actor: Actor, order_id: str) -> Order:
    """The order with its lines and refunds, freshly read; 404 unless the actor may see it."""
    order = session.scalar(_with_details(select(Order).where(
        Order.tenant_id == actor.tenant_id, Order.id == order_id)))
    if order is None or not _visible(actor, order):
        raise OrderNotFound()
    return order


def get_order(session: Session, actor: Actor, order_id: str) -> Order:
    """An order of the actor's brand in a store the actor sees; anything else is 404."""
    require_read(actor)
    return load_order(session, actor, order_id)


def _page(session: Session, actor: Actor, query: Select[Order], *, limit: int,
          before: datetime | None, before_id: str | None) -> list[Order]:
    if actor.store_ids is not None:
        query = query.where(Order.store_id.in_(actor.store_ids))
    if before is not None:
        moment = aware(before, get_tenant(session, actor.tenant_id).timezone)
        if before_id is not None:
            query = query.where(or_(Order.paid_at < moment,
                                    and_(Order.paid_at == moment, Order.id < before_id)))
        else:
            query = query.where(Order.paid_at < moment)
    query = query.order_by(Order.paid_at.desc(), Order.id.desc()).limit(
        max(1, min(limit, MAX_PAGE)))
    return list(session.scalars(_with_details(query)))


def list_orders(session: Session, actor: Actor, *, store_id: str | None = None,
                paid_from: datetime | None = None, paid_to: datetime | None = None,
                limit: int = 50, before: datetime | None = None,
                before_id: str | None = None) -> list[Order]:
    """Newest first (by payment time), optionally one store and a period [from, to).

    Page with the last order's (`paid_at`, `id`) as (`before`, `before_id`).
    """
    require_read(actor)
    timezone = get_tenant(session, actor.tenant_id).timezone
    query = select(Order).where(Order.tenant_id == actor.tenant_id)
    if store_id is not None:
        try:
            query = query.where(Order.store_id == get_store(session, actor, store_id).id)
        except StoreNotFound as exc:
            exc.field = "store_id"
            raise
    if paid_from is not None:
        query = query.where(Order.paid_at >= aware(paid_from, timezone))
    if paid_to is not None:
        query = query.where(Order.paid_at < aware(paid_to, timezone))
    return _page(session, actor, query, limit=limit, before=before, before_id=before_id)


def list_orders_of_profiles(session: Session, actor: Actor,
                            customer_ids: set[str]) -> list[Order]:
    """Every order of these profiles (a person's survivor and merged ones), oldest first."""
    require_read(actor)
    return list(session.scalars(_with_details(select(Order).where(
        Order.tenant_id == actor.tenant_id, Order.customer_id.in_(customer_ids))
        .order_by(Order.paid_at, Order.id))))


def list_customer_orders(session: Session, actor: Actor, customer_id: str, *,
                         limit: int = 50, before: datetime | None = None,
                         before_id: str | None = None) -> list[Order]:
    """The orders of a customer and of every profile merged into it, newest first."""
    require_read(actor)
    customer = get_customer(session, actor, customer_id)
    ids = profile_ids(session, actor.tenant_id, customer.id)
    query = select(Order).where(Order.tenant_id == actor.tenant_id, Order.customer_id.in_(ids))
    return _page(session, actor, query, limit=limit, before=before, before_id=before_id)


@dataclass(frozen=True)
class SpendSummary:
    orders: int
    net_spend_minor: int  # paid minus refunded
    first_paid_at: datetime | None
    last_paid_at: datetime | None


def spend_summary(session: Session, actor: Actor, customer_ids: set[str]) -> SpendSummary:
    """What these profiles (a survivor and those merged into it) have spent, in one query."""
    require_read(actor)
    count, net, first, last = session.execute(select(
        func.count(Order.id), func.coalesce(func.sum(Order.total_minor - Order.refunded_minor), 0),
        func.min(Order.paid_at), func.max(Order.paid_at)).where(
        Order.tenant_id == actor.tenant_id, Order.customer_id.in_(customer_ids))).one()
    return SpendSummary(orders=count, net_spend_minor=int(net), first_paid_at=first,
                        last_paid_at=last)
