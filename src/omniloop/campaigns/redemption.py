"""Validation and redemption at the POS, and voiding a redemption.

`check` and `redeem` decide with the same `evaluate`, so what the POS was told before
payment is what happens at redemption, unless someone else used the coupon in between. That
race is settled by conditional UPDATEs (see `models`), never by the earlier read: the read
gives the cashier a precise reason, the UPDATE gives the guarantee.

A redemption's writes begin by claiming its idempotency key (unique per tenant). A retry
gets the first result back: after its first attempt, the checks refuse it (the coupon is
used) or the key's unique index does, and either way the key is then looked up. A retry that
arrives while the first attempt is still running waits on that key's index entry
(PostgreSQL) or on the write lock (SQLite) first.

This is the hot path of every till, and on SQLite a redemption runs it while it holds the
one write lock: its statements are `core.prepared` ones, built and compiled once; the store
with its brand and the coupon with its campaign are read as plain rows of the columns the
checks use (`StoreRow`, `TenantRow`, `CouponRow`, `CampaignRow`; the rules take any object
with a campaign's terms), not as ORM objects; and the writes are Core statements, no flush.
A fresh redemption costs two SELECTs and, in one savepoint, four writes (redemption, coupon,
campaign counters, event).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Column, Table, and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns.errors import (
    BudgetExhausted,
    CouponAlreadyRedeemed,
    CouponCancelled,
    CouponNotFound,
    CustomerLimitReached,
    NotCombinable,
    QuotaExhausted,
    RedemptionNotFound,
    StoreNotEligible,
    VoidWindowPassed,
)
from omniloop.campaigns.limits import release_participant_slot, take_participant_slot
from omniloop.campaigns.listeners import coupon_redeemed
from omniloop.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignParticipant,
    CampaignStatus,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
    Stacking,
)
from omniloop.campaigns.rules import (
    Basket,
    BasketLine,
    Validity,
    coupon_validity,
    discount_for,
    local_text,
    require_running,
    require_schedule,
    require_valid,
)
from omniloop.campaigns.schemas import PosCheckIn, RedeemIn
from omniloop.campaigns.service import normalize_code
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session, stored
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.idempotency import IdempotencyKeyReused, require_key
from omniloop.core.ids import new_id
from omniloop.core.prepared import Prepared, plain_savepoint
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenKind, looks_like_token, verify_token
from omniloop.customers.ingest import INSERT_EVENT
from omniloop.customers.profiles import survivor_ids
from omniloop.orders.errors import OrderNotFound
from omniloop.orders.models import Order
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.errors import StoreNotFound
from omniloop.tenancy.models import Store, Tenant
from omniloop.tenancy.tenants import get_tenant

audit.register_action("redemption.void", N_("Voided a coupon redemption"))


class StoreRow(NamedTuple):
    """The store a check is made at: what the checks and the answer use of it."""

    id: str
    name: str


class TenantRow(NamedTuple):
    """The store's brand: what the checks and the answer use of it."""

    id: str
    timezone: str
    currency: str


class CouponRow(NamedTuple):
    """The presented coupon, as far as the checks and the answer read it."""

    id: str
    code: str | None
    status: CouponStatus
    customer_id: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    created_at: datetime
    redeemed_at: datetime | None
    redemption_id: str | None


class CampaignRow(NamedTuple):
    """The coupon's campaign, as far as the checks and the answer read it (a `rules.Terms`).
    The counters are as read: the conditional UPDATEs decide with the stored ones."""

    tenant_id: str
    id: str
    name: str
    kind: CampaignKind
    status: CampaignStatus
    starts_at: datetime
    ends_at: datetime | None
    value_minor: int | None
    percent_off: int | None
    max_discount_minor: int | None
    free_sku: str | None
    gift_name: str | None
    coupon_valid_days: int | None
    coupon_valid_from: datetime | None
    coupon_valid_until: datetime | None
    min_spend_minor: int
    store_ids: list[str]
    skus: list[str]
    categories: list[str]
    weekdays: list[int]
    hours_start: str | None
    hours_end: str | None
    per_customer_limit: int
    quota: int | None
    budget_minor: int | None
    stacking: Stacking
    shared_code: str | None
    redeemed_count: int
    discount_minor: int


# The statements of the hot path, built and compiled once (`core.prepared`): building a
# statement and its cache key, and SQLAlchemy's execution of it, cost more than SQLite takes
# to run it. The writes are Core statements on the tables, which skip the ORM's unit of work
# (the flush of one object costs about as much as the whole rest of a redemption); the rows
# they write are the ones the ORM would.
_coupons: Table = Coupon.__table__  # type: ignore[assignment]
_campaigns: Table = Campaign.__table__  # type: ignore[assignment]
_redemptions: Table = Redemption.__table__  # type: ignore[assignment]
_participants: Table = CampaignParticipant.__table__  # type: ignore[assignment]
_stores: Table = Store.__table__  # type: ignore[assignment]
_tenants: Table = Tenant.__table__  # type: ignore[assignment]


def _columns(table: Table, row: type[tuple[Any, ...]]) -> list[Column[Any]]:
    """The columns of `table` that `row` (a NamedTuple named after them) holds, in order."""
    return [table.c[name] for name in row._fields]  # type: ignore[attr-defined]


_COUPON_WIDTH = len(CouponRow._fields)
_TARGET = select(*_columns(_coupons, CouponRow), *_columns(_campaigns, CampaignRow)).join_from(
    _coupons, _campaigns, and_(_campaigns.c.tenant_id == _coupons.c.tenant_id,
                               _campaigns.c.id == _coupons.c.campaign_id))
_COUPON_BY_CODE = Prepared(_TARGET.where(_coupons.c.tenant_id == bindparam("tenant_id"),
                                         _coupons.c.code == bindparam("code")))
_COUPON_BY_ID = Prepared(_TARGET.where(_coupons.c.tenant_id == bindparam("tenant_id"),
                                       _coupons.c.id == bindparam("coupon_id")))
_SHARED_CAMPAIGN = Prepared(select(*_columns(_campaigns, CampaignRow)).where(
    _campaigns.c.tenant_id == bindparam("tenant_id"),
    _campaigns.c.shared_code == bindparam("code")))
_STORE_AND_TENANT = Prepared(
    select(*_columns(_stores, StoreRow), *_columns(_tenants, TenantRow))
    .join_from(_stores, _tenants, _tenants.c.id == _stores.c.tenant_id)
    .where(_stores.c.tenant_id == bindparam("tenant_id"), _stores.c.code == bindparam("code")))
_USED_BY_CUSTOMER = Prepared(select(_participants.c.redemptions).where(
    _participants.c.tenant_id == bindparam("tenant_id"),
    _participants.c.campaign_id == bindparam("campaign_id"),
    _participants.c.customer_id == bindparam("customer_id")))
_IN_BASKET = Prepared(
    select(_campaigns.c.name, _campaigns.c.stacking)
    .join_from(_campaigns, _redemptions, (_redemptions.c.tenant_id == _campaigns.c.tenant_id)
               & (_redemptions.c.campaign_id == _campaigns.c.id))
    .where(_redemptions.c.tenant_id == bindparam("tenant_id"),
           _redemptions.c.basket_id == bindparam("basket_id"),
           _redemptions.c.status == RedemptionStatus.redeemed))
# What a refused conditional UPDATE left: who took the coupon, how far the counters are.
_COUPON_USE = Prepared(select(_coupons.c.redemption_id, _coupons.c.redeemed_at).where(
    _coupons.c.tenant_id == bindparam("tenant_id"), _coupons.c.id == bindparam("coupon_id")))
_CAMPAIGN_COUNT = Prepared(select(_campaigns.c.quota, _campaigns.c.redeemed_count).where(
    _campaigns.c.tenant_id == bindparam("tenant_id"), _campaigns.c.id == bindparam("campaign_id")))
_BY_KEY = select(Redemption).where(Redemption.tenant_id == bindparam("tenant_id"),
                                   Redemption.idempotency_key == bindparam("key"))
_INSERT_REDEMPTION = Prepared(insert(_redemptions), columns=_redemptions.c.keys())
_TAKE_COUPON = Prepared(
    update(_coupons)
    .where(_coupons.c.tenant_id == bindparam("b_tenant_id"),
           _coupons.c.id == bindparam("b_coupon_id"),
           # Not IN (…): a literal list is an expanding parameter, which `Prepared` refuses.
           (_coupons.c.status == CouponStatus.available)
           | (_coupons.c.status == CouponStatus.claimed))
    .values(status=CouponStatus.redeemed, redeemed_at=bindparam("b_now"),
            redemption_id=bindparam("b_redemption_id")))
_discount = bindparam("b_discount", type_=BigInteger)
_COUNT_REDEMPTION = Prepared(
    update(_campaigns)
    .where(_campaigns.c.tenant_id == bindparam("b_tenant_id"),
           _campaigns.c.id == bindparam("b_campaign_id"),
           _campaigns.c.quota.is_(None) | (_campaigns.c.redeemed_count < _campaigns.c.quota),
           _campaigns.c.budget_minor.is_(None)
           | (_campaigns.c.discount_minor + _discount <= _campaigns.c.budget_minor))
    .values(redeemed_count=_campaigns.c.redeemed_count + 1,
            discount_minor=_campaigns.c.discount_minor + _discount))
_LINK_ORDER = Prepared(
    update(_redemptions)
    .where(_redemptions.c.tenant_id == bindparam("b_tenant_id"),
           _redemptions.c.id == bindparam("b_redemption_id"))
    .values(order_id=bindparam("b_order_id")))
_ORDER_BY_EXTERNAL_ID = Prepared(select(Order.id).where(
    Order.tenant_id == bindparam("tenant_id"), Order.external_id == bindparam("external_id")))


@dataclass(frozen=True)
class Target:
    """What the presented code or token points at."""

    campaign: CampaignRow
    coupon: CouponRow | None
    code: str | None


@dataclass(frozen=True)
class Evaluation:
    target: Target
    store: StoreRow
    tenant: TenantRow
    discount_minor: int
    customer_id: str | None
    valid_until: datetime | None


def _target(row: tuple[Any, ...]) -> Target:
    coupon = CouponRow._make(row[:_COUPON_WIDTH])
    campaign = CampaignRow._make(row[_COUPON_WIDTH:])
    return Target(campaign=campaign, coupon=coupon, code=coupon.code or campaign.shared_code)


def resolve(session: Session, actor: Actor, presented: str) -> Target:
    """A typed code, a shared code, or a scanned QR token → its campaign and coupon."""
    text = presented.strip()
    if looks_like_token(text):
        claims = verify_token(text, tenant_id=actor.tenant_id, kind=TokenKind.COUPON)
        row = _COUPON_BY_ID.first(session, {"tenant_id": actor.tenant_id,
                                            "coupon_id": claims.subject_id})
        if row is None:
            raise CouponNotFound(code=text[:12] + "…")
        return _target(row)
    code = normalize_code(text)
    row = _COUPON_BY_CODE.first(session, {"tenant_id": actor.tenant_id, "code": code})
    if row is not None:
        return _target(row)
    shared = _SHARED_CAMPAIGN.first(session, {"tenant_id": actor.tenant_id, "code": code})
    if shared is None:
        raise CouponNotFound(code=code)
    return Target(campaign=CampaignRow._make(shared), coupon=None, code=code)


def _basket(data: PosCheckIn) -> Basket:
    return Basket(total_minor=data.basket_total_minor, lines=tuple(
        BasketLine(sku=line.sku, category=line.category, quantity=line.quantity,
                   unit_price_minor=line.unit_price_minor) for line in data.lines))


def _validity(campaign: CampaignRow, coupon: CouponRow | None) -> Validity:
    if coupon is not None and coupon.valid_from is not None:
        return Validity(valid_from=coupon.valid_from, valid_until=coupon.valid_until)
    # A printed or imported code that nobody claimed counts from when it was made.
    made = as_utc(coupon.created_at) if coupon is not None else as_utc(campaign.starts_at)
    return coupon_validity(campaign, made)


def _already_redeemed(session: Session, tenant: TenantRow, redemption_id: str | None,
                      redeemed_at: datetime | None) -> CouponAlreadyRedeemed:
    """The refusal of a used coupon, saying where and when (a refusal: no hurry here)."""
    redemption = session.get(Redemption, (tenant.id, redemption_id)) if redemption_id else None
    store = session.get(Store, (tenant.id, redemption.store_id)) if redemption else None
    when = redemption.redeemed_at if redemption else redeemed_at
    return CouponAlreadyRedeemed(store=store.name if store else "?",
                                 time=local_text(when, tenant.timezone) if when else "?")


def _customer_of(session: Session, actor: Actor, target: Target,
                 customer_id: str | None) -> str | None:
    chosen = target.coupon.customer_id if target.coupon and target.coupon.customer_id else (
        customer_id)
    if chosen is None:
        return None
    return survivor_ids(session, actor.tenant_id, [chosen])[chosen]


def _stacking_conflict(session: Session, tenant_id: str, campaign: CampaignRow,
                       basket_id: str | None) -> None:
    if basket_id is None:
        return
    others = _IN_BASKET.rows(session, {"tenant_id": tenant_id, "basket_id": basket_id})
    for name, stacking in others:
        if campaign.stacking == Stacking.exclusive or stacking == Stacking.exclusive:
            raise NotCombinable(other=name)


def _store_and_tenant(session: Session, actor: Actor,
                      store_code: str) -> tuple[StoreRow, TenantRow]:
    """`tenancy.stores.get_store_by_code` and the store's tenant, in one query: every check
    needs both."""
    actor.require(Permission.stores_read)
    row = _STORE_AND_TENANT.first(session, {"tenant_id": actor.tenant_id,
                                            "code": store_code.strip().upper()})
    if row is None or not actor.sees_store(row[0]):
        raise StoreNotFound()
    return StoreRow(row[0], row[1]), TenantRow(row[2], row[3], row[4])


def evaluate(session: Session, actor: Actor, data: PosCheckIn, *,
             now: datetime | None = None) -> Evaluation:
    """Everything that decides whether the coupon applies here and now, and its discount.

    Raises the first refusal that applies, in the order a cashier can act on it.
    """
    actor.require(Permission.pos_use)
    now = now or utcnow()
    store, tenant = _store_and_tenant(session, actor, data.store_code)
    target = resolve(session, actor, data.code)
    campaign, coupon = target.campaign, target.coupon
    if coupon is not None and coupon.status == CouponStatus.redeemed:
        raise _already_redeemed(session, tenant, coupon.redemption_id, coupon.redeemed_at)
    if coupon is not None and coupon.status == CouponStatus.cancelled:
        raise CouponCancelled()
    require_running(campaign, now, tenant.timezone)
    validity = _validity(campaign, coupon)
    require_valid(validity, now, tenant.timezone)
    if campaign.store_ids and store.id not in campaign.store_ids:
        raise StoreNotEligible(store=store.name)
    require_schedule(campaign, now, tenant.timezone)
    customer_id = _customer_of(session, actor, target, data.customer_id)
    if customer_id is not None:
        used = _USED_BY_CUSTOMER.scalar(session, {
            "tenant_id": tenant.id, "campaign_id": campaign.id,
            "customer_id": customer_id}) or 0
        if used >= campaign.per_customer_limit:
            raise CustomerLimitReached(limit=campaign.per_customer_limit)
    if campaign.quota is not None and campaign.redeemed_count >= campaign.quota:
        raise QuotaExhausted(quota=campaign.quota)
    discount = discount_for(campaign, _basket(data), tenant.currency)
    if (campaign.budget_minor is not None
            and campaign.discount_minor + discount > campaign.budget_minor):
        raise BudgetExhausted()
    _stacking_conflict(session, tenant.id, campaign, data.basket_id)
    return Evaluation(target=target, store=store, tenant=tenant, discount_minor=discount,
                      customer_id=customer_id, valid_until=validity.valid_until)


def _digest(data: RedeemIn) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_key(session: Session, tenant_id: str, key: str) -> Redemption | None:
    return session.scalar(_BY_KEY, {"tenant_id": tenant_id, "key": key})


def _replay(existing: Redemption, digest: str) -> Redemption:
    if existing.request_digest != digest:
        raise IdempotencyKeyReused()
    return existing


@dataclass(frozen=True)
class RedeemResult:
    redemption: Redemption
    replayed: bool


def redeem(session: Session, actor: Actor, data: RedeemIn, idempotency_key: str | None, *,
           now: datetime | None = None) -> RedeemResult:
    """Use the coupon once, exactly once, whatever the retries and races."""
    actor.require(Permission.pos_use)
    key = require_key(idempotency_key)
    digest = _digest(data)
    now = now or utcnow()
    # A retry is recognised by its key, not looked up before every redemption: a retry of a
    # redemption that went through is refused by the checks (the coupon is used), or, where
    # they still pass (a shared code), by the key's unique index at the INSERT that `_apply`
    # begins with. Either way the key is looked up then, and the first result answers.
    try:
        evaluation = evaluate(session, actor, data, now=now)
    except OmniloopError:
        existing = _by_key(session, actor.tenant_id, key)
        if existing is None:
            raise
        return RedeemResult(_replay(existing, digest), replayed=True)
    try:
        redemption = _apply(session, actor, data, evaluation, key, digest, now)
    except IntegrityError:
        # The key is taken: by an earlier attempt, or by a concurrent one that committed
        # while this one waited on the key's index entry (PostgreSQL) or the write lock.
        existing = _by_key(session, actor.tenant_id, key)
        if existing is None:
            raise
        return RedeemResult(_replay(existing, digest), replayed=True)
    coupon_redeemed(session, actor, redemption)  # same transaction (loops: referrals)
    return RedeemResult(redemption, replayed=False)


def _apply(session: Session, actor: Actor, data: RedeemIn, evaluation: Evaluation, key: str,
           digest: str, now: datetime) -> Redemption:
    campaign = evaluation.target.campaign
    coupon = evaluation.target.coupon
    tenant = evaluation.tenant
    discount = evaluation.discount_minor
    redemption_id = new_id()
    values: dict[str, Any] = {
        "tenant_id": tenant.id, "id": redemption_id, "campaign_id": campaign.id,
        "coupon_id": coupon.id if coupon else None, "code": evaluation.target.code,
        "store_id": evaluation.store.id, "customer_id": evaluation.customer_id,
        "staff_label": data.staff or actor.label, "actor_label": actor.label,
        "idempotency_key": key, "request_digest": digest, "basket_id": data.basket_id,
        "basket_total_minor": data.basket_total_minor, "discount_minor": discount,
        "order_id": None, "status": RedemptionStatus.redeemed, "redeemed_at": now,
        "voided_at": None, "voided_by": None, "void_reason": None}
    ids = {"b_tenant_id": tenant.id, "b_redemption_id": redemption_id}
    # Everything in one savepoint: a refusal raised half-way leaves no trace even for a
    # caller that catches it and commits the rest of its work (the cashier's page does).
    with _all_or_nothing(session, orm_writes=bool(data.order_lines)):
        _INSERT_REDEMPTION.run(session, values)  # takes the idempotency key first
        if coupon is not None and _TAKE_COUPON.run(
                session, {**ids, "b_coupon_id": coupon.id, "b_now": now}) != 1:
            used = _COUPON_USE.first(session, {"tenant_id": tenant.id, "coupon_id": coupon.id})
            raise _already_redeemed(session, tenant, *(used or (None, None)))
        if _COUNT_REDEMPTION.run(session, {**ids, "b_campaign_id": campaign.id,
                                           "b_discount": discount}) != 1:
            counts = _CAMPAIGN_COUNT.first(session, {"tenant_id": tenant.id,
                                                     "campaign_id": campaign.id})
            quota, redeemed_count = counts or (None, 0)
            if quota is not None and redeemed_count >= quota:
                raise QuotaExhausted(quota=quota)
            raise BudgetExhausted()
        if evaluation.customer_id is not None and not take_participant_slot(
                session, campaign, evaluation.customer_id, "redemptions",
                campaign.per_customer_limit):
            raise CustomerLimitReached(limit=campaign.per_customer_limit)
        order_id = _order_for(session, actor, data, evaluation, redemption_id, discount, now)
        if order_id is not None:
            values["order_id"] = order_id
            _LINK_ORDER.run(session, {**ids, "b_order_id": order_id})
        # The coupon_redeemed event, as `customers.events.record_event` would store it, but
        # without its look-up first: the client event id names this new redemption, so no
        # event can hold it yet, and the unique constraint would refuse a second one anyway.
        INSERT_EVENT.run(session, {
            "tenant_id": tenant.id, "id": new_id(),
            "client_event_id": f"coupon_redeemed:{redemption_id}", "type": "coupon_redeemed",
            "channel": "offline", "source": "pos", "customer_id": evaluation.customer_id,
            "store_id": evaluation.store.id, "campaign_id": campaign.id,
            "properties": {"redemption_id": redemption_id, "coupon_id": values["coupon_id"],
                           "discount_minor": discount},
            "occurred_at": now, "received_at": utcnow()})
    # The redemption row is exactly `values`: the object is made as if read back, without
    # reading it, and left out of the session (adding it, and its removal when the session
    # closes, cost ~8 µs of the write lock's time, for nothing to flush); a later query of
    # the session reads the row from the table.
    return stored(Redemption, values, to_add=False)


@contextmanager
def _all_or_nothing(session: Session, *, orm_writes: bool) -> Iterator[None]:
    """A savepoint around a redemption's writes, rolled back if the block raises.

    The writes are Core statements that the session does not track, so a plain SQL savepoint
    does (`core.prepared.plain_savepoint`); the session's own (`begin_nested`) is kept for a
    redemption that records its order, whose ORM objects the session must forget if the
    savepoint is rolled back.
    """
    with session.begin_nested() if orm_writes else plain_savepoint(session, "pos_redemption"):
        yield


def _order_for(session: Session, actor: Actor, data: RedeemIn, evaluation: Evaluation,
               redemption_id: str, discount: int, now: datetime) -> str | None:
    """Record the purchase the coupon was used on, or link the one already recorded."""
    if data.order_lines:
        order, _ = ingest_order(session, actor, OrderIn(
            external_id=data.order_external_id or f"redemption-{redemption_id}",
            source="pos", store_id=evaluation.store.id, customer_id=evaluation.customer_id,
            lines=data.order_lines, discount_minor=discount, paid_at=data.paid_at or now))
        return order.id
    if data.order_external_id:
        order_id: str | None = _ORDER_BY_EXTERNAL_ID.scalar(session, {
            "tenant_id": actor.tenant_id, "external_id": data.order_external_id})
        if order_id is None:
            raise OrderNotFound()
        return order_id
    return None


def void_redemption(session: Session, actor: Actor, redemption_id: str, reason: str, *,
                    now: datetime | None = None) -> Redemption:
    """Undo a redemption made by mistake, within the window, and give its quota back.

    Voiding twice is harmless: the second call returns the voided redemption unchanged.
    """
    actor.require(Permission.pos_use)
    now = now or utcnow()
    redemption = session.scalar(select(Redemption).where(
        Redemption.tenant_id == actor.tenant_id, Redemption.id == redemption_id)
        .with_for_update())
    if redemption is None or not actor.sees_store(redemption.store_id):
        raise RedemptionNotFound()
    if redemption.status == RedemptionStatus.voided:
        return redemption
    tenant = get_tenant(session, actor.tenant_id)
    window = timedelta(minutes=get_settings().redemption_void_minutes)
    if now - as_utc(redemption.redeemed_at) > window:
        raise VoidWindowPassed(minutes=get_settings().redemption_void_minutes,
                               time=local_text(redemption.redeemed_at, tenant.timezone))
    changed = session.execute(
        update(Redemption)
        .where(Redemption.tenant_id == tenant.id, Redemption.id == redemption.id,
               Redemption.status == RedemptionStatus.redeemed)
        .values(status=RedemptionStatus.voided, voided_at=now, voided_by=actor.label,
                void_reason=reason)
        .execution_options(synchronize_session=False))
    session.refresh(redemption)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return redemption  # voided meanwhile by a concurrent call
    campaign = session.get(Campaign, (tenant.id, redemption.campaign_id))
    assert campaign is not None
    if redemption.coupon_id is not None:
        coupon = session.get(Coupon, (tenant.id, redemption.coupon_id))
        assert coupon is not None
        session.execute(
            update(Coupon)
            .where(Coupon.tenant_id == tenant.id, Coupon.id == coupon.id,
                   Coupon.redemption_id == redemption.id)
            .values(status=CouponStatus.claimed if coupon.customer_id else
                    CouponStatus.available, redeemed_at=None, redemption_id=None)
            .execution_options(synchronize_session=False))
        session.expire(coupon)
    session.execute(
        update(Campaign)
        .where(Campaign.tenant_id == tenant.id, Campaign.id == campaign.id)
        .values(redeemed_count=Campaign.redeemed_count - 1,
                discount_minor=Campaign.discount_minor - redemption.discount_minor)
        .execution_options(synchronize_session=False))
    session.expire(campaign)
    if redemption.customer_id is not None:
        release_participant_slot(session, campaign, redemption.customer_id, "redemptions")
    audit.record(session, actor, "redemption.void", "redemption", redemption.id,
                 {"reason": reason, "campaign_id": campaign.id,
                  "discount_minor": redemption.discount_minor})
    return redemption


def list_redemptions(session: Session, actor: Actor, campaign_id: str, *,
                     limit: int = 100) -> list[Redemption]:
    actor.require(Permission.campaigns_read)
    query = select(Redemption).where(Redemption.tenant_id == actor.tenant_id,
                                     Redemption.campaign_id == campaign_id)
    if actor.store_ids is not None:
        query = query.where(Redemption.store_id.in_(actor.store_ids))
    return list(session.scalars(query.order_by(Redemption.redeemed_at.desc()).limit(limit)))
