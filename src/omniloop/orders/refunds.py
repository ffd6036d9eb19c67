"""Refunds: in full, by amount, or for returned lines. Idempotent by the refund's external id.

Concurrency: a refund inserts its row (unique per order and external id), then moves the
counters with conditional UPDATEs whose row counts are checked —
`order_lines.refunded_quantity` only from the value the amount was computed from, and
`orders.refunded_minor` only while it stays within the total. When another refund got
there first, the savepoint is rolled back and the refund worked out again from what is
now committed, so concurrent refunds never exceed the order, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from omniloop.core.clock import as_utc, aware, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import Conflict
from omniloop.customers.events import record_event
from omniloop.orders import pricing
from omniloop.orders.errors import (
    AmountOrLines,
    DuplicateRefundLine,
    LineNotInOrder,
    LineReference,
    NothingToRefund,
    RefundAmountZero,
    RefundConflict,
    RefundExceedsLine,
    RefundExceedsOrder,
    RefundTimeInvalid,
)
from omniloop.orders.listeners import refund_recorded
from omniloop.orders.models import Order, OrderLine, OrderStatus, Refund, RefundLine
from omniloop.orders.schemas import RefundIn
from omniloop.orders.service import CLOCK_SKEW, load_order, require_write
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor
from omniloop.tenancy.tenants import get_tenant

_RACE_RETRIES = 8


class _Stale(Exception):
    """Another refund changed the order between reading it and updating it."""


@dataclass(frozen=True)
class _Take:
    line: OrderLine
    quantity: int
    amount_minor: int


@dataclass(frozen=True)
class _Plan:
    amount_minor: int
    takes: list[_Take]


def _digest(data: RefundIn, refunded_at: datetime | None) -> str:
    content: dict[str, Any] = {
        "amount_minor": data.amount_minor,
        "lines": None if data.lines is None else [
            [line.line_id, line.position, line.quantity] for line in data.lines],
        "reason": data.reason,
        "refunded_at": refunded_at.isoformat() if refunded_at is not None else None,
    }
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _find(session: Session, tenant_id: str, order_id: str, external_id: str) -> Refund | None:
    return session.scalar(select(Refund).where(
        Refund.tenant_id == tenant_id, Refund.order_id == order_id,
        Refund.external_id == external_id).options(selectinload(Refund.lines))
        .execution_options(populate_existing=True))


def _plan(order: Order, data: RefundIn) -> _Plan:
    """What this refund takes back, given the order as it is now; errors name the field."""
    remaining = order.total_minor - order.refunded_minor
    if data.lines is None:
        if remaining <= 0:
            raise NothingToRefund()
        if data.amount_minor is not None:
            if data.amount_minor > remaining:
                raise RefundExceedsOrder(field="amount_minor", amount=data.amount_minor,
                                         remaining=remaining)
            return _Plan(amount_minor=data.amount_minor, takes=[])
        # In full: whatever money is left, and every unit not yet returned.
        return _priced([(line, line.quantity - line.refunded_quantity) for line in order.lines
                        if line.refunded_quantity < line.quantity], remaining, exact=True)

    by_id = {line.id: line for line in order.lines}
    by_position = {line.position: line for line in order.lines}
    picks: list[tuple[OrderLine, int]] = []
    seen: set[str] = set()
    for index, wanted in enumerate(data.lines):
        if (wanted.line_id is None) == (wanted.position is None):
            raise LineReference(field=f"lines.{index}.line_id")
        if wanted.line_id is not None:
            line = by_id.get(wanted.line_id)
            if line is None:
                raise LineNotInOrder(field=f"lines.{index}.line_id", line=wanted.line_id)
        else:
            line = by_position.get(wanted.position or 0)
            if line is None:
                raise LineNotInOrder(field=f"lines.{index}.position", line=wanted.position)
        if line.id in seen:
            raise DuplicateRefundLine(field=f"lines.{index}", position=line.position)
        seen.add(line.id)
        left = line.quantity - line.refunded_quantity
        if wanted.quantity > left:
            raise RefundExceedsLine(field=f"lines.{index}.quantity", position=line.position,
                                    remaining=left, quantity=wanted.quantity)
        picks.append((line, wanted.quantity))
    if remaining <= 0:
        raise NothingToRefund()
    plan = _priced(sorted(picks, key=lambda pick: pick[0].position), remaining, exact=False)
    if plan.amount_minor == 0:
        raise RefundAmountZero(field="lines")
    return plan


def _priced(picks: list[tuple[OrderLine, int]], remaining: int, *, exact: bool) -> _Plan:
    """Price returned units from each line's net amount, never beyond what is left on the
    order. `exact`: the refund is `remaining` itself (a refund in full)."""
    values = [pricing.returned_value(line.net_minor, line.quantity, line.refunded_quantity,
                                     quantity) for line, quantity in picks]
    amounts = pricing.cap(values, remaining)
    takes = [_Take(line=line, quantity=quantity, amount_minor=amount)
             for (line, quantity), amount in zip(picks, amounts, strict=True)]
    return _Plan(amount_minor=remaining if exact else sum(amounts), takes=takes)


def _apply(session: Session, actor: Actor, order: Order, plan: _Plan, data: RefundIn,
           refunded_at: datetime, digest: str) -> Refund:
    """Insert the refund and move the counters; `_Stale` if another refund moved them."""
    refund = Refund(
        tenant_id=actor.tenant_id, order_id=order.id, external_id=data.external_id,
        amount_minor=plan.amount_minor, currency=order.currency, reason=data.reason,
        content_digest=digest, actor_label=actor.label, refunded_at=refunded_at,
        lines=[RefundLine(tenant_id=actor.tenant_id, line_id=take.line.id,
                          position=take.line.position, quantity=take.quantity,
                          amount_minor=take.amount_minor) for take in plan.takes])
    session.add(refund)
    session.flush()
    for take in plan.takes:
        moved = session.execute(
            update(OrderLine).where(
                OrderLine.tenant_id == actor.tenant_id, OrderLine.id == take.line.id,
                OrderLine.refunded_quantity == take.line.refunded_quantity)
            .values(refunded_quantity=take.line.refunded_quantity + take.quantity)
            .execution_options(synchronize_session=False))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise _Stale()
    after = Order.refunded_minor + plan.amount_minor
    moved = session.execute(
        update(Order).where(Order.tenant_id == actor.tenant_id, Order.id == order.id,
                            after <= Order.total_minor)
        .values(refunded_minor=after,
                status=case((after < Order.total_minor, OrderStatus.partially_refunded.value),
                            else_=OrderStatus.refunded.value),
                updated_at=utcnow())
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise _Stale()
    return refund


def refund(session: Session, actor: Actor, order_id: str,
           data: RefundIn) -> tuple[Refund, bool]:
    """Refund (part of) an order. Returns (refund, created).

    No `amount_minor` and no `lines`: everything left, money and goods. `amount_minor`: that
    much money, no goods. `lines`: those units, priced from each line's net amount. A retry
    with the same external id returns the first refund and changes nothing.
    """
    require_write(actor)
    order = load_order(session, actor, order_id)
    if data.amount_minor is not None and data.lines is not None:
        raise AmountOrLines(field="amount_minor")
    refunded_at = None
    if data.refunded_at is not None:
        refunded_at = aware(data.refunded_at, get_tenant(session, actor.tenant_id).timezone)
        if refunded_at < as_utc(order.paid_at) or refunded_at > utcnow() + CLOCK_SKEW:
            raise RefundTimeInvalid(field="refunded_at")
    digest = _digest(data, refunded_at)

    for _ in range(_RACE_RETRIES):
        existing = _find(session, actor.tenant_id, order.id, data.external_id)
        if existing is not None:
            if existing.content_digest != digest:
                raise RefundConflict(field="external_id", external_id=data.external_id)
            return existing, False
        order = load_order(session, actor, order_id)
        plan = _plan(order, data)
        try:
            with session.begin_nested():
                created = _apply(session, actor, order, plan, data, refunded_at or utcnow(),
                                 digest)
        except _Stale:
            continue
        except IntegrityError:
            if _find(session, actor.tenant_id, order.id, data.external_id) is None:
                raise
            continue  # the same refund was recorded concurrently: answer with it
        _record(session, actor, order, created)
        refund_recorded(session, actor, order, created)
        return created, True
    raise Conflict()


def _record(session: Session, actor: Actor, order: Order, refund: Refund) -> None:
    lines = [{"line_id": line.line_id, "position": line.position, "quantity": line.quantity,
              "amount_minor": line.amount_minor} for line in refund.lines]
    record_event(session, actor, client_event_id=f"refund:{refund.id}", type="refund",
                 channel="offline" if order.store_id is not None else "online",
                 source=order.source, customer_id=order.customer_id, store_id=order.store_id,
                 occurred_at=refund.refunded_at,
                 properties={"order_id": order.id, "refund_id": refund.id,
                             "external_id": refund.external_id,
                             "amount_minor": refund.amount_minor, "currency": order.currency,
                             "lines": lines})
    audit.record(session, actor, "order.refund", "order", order.id, {
        "refund_id": refund.id, "external_id": refund.external_id,
        "amount_minor": refund.amount_minor, "currency": order.currency,
        "reason": refund.reason, "lines": lines})
