"""Points from orders, and taking them back when orders are refunded.

Runs as listeners of the orders module (`omniloop.wiring`), in the transaction that records
the order or refund, so an order and its points commit together or not at all.

Refunds reverse in proportion to the money refunded, cumulatively: after refunds totalling
R of an order of T that earned E, exactly floor(E × R / T) points have been taken back, so a
full refund takes back exactly E whatever the partial refunds before it. Points already spent
cannot be taken back from a balance that does not have them: the reversal takes what there
is (the balance never goes negative) and records the rest as `unrecovered` — the brand
carries that loss, bounded by the order's own points. See docs/loyalty.md.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, func, literal, select

from omniloop.core.clock import as_utc
from omniloop.core.db import Session, stored
from omniloop.customers.profiles import survivor_ids
from omniloop.loyalty.ledger import Source, credit, debit, expiry_for, find_entry
from omniloop.loyalty.merging import moved_lots
from omniloop.loyalty.models import EntryKind, LoyaltyProgram, PointsAccount, PointsEntry
from omniloop.loyalty.program import default_program, points_for, tier_multiplier_bp
from omniloop.orders.models import Order, Refund
from omniloop.tenancy.access import Actor

_PROGRAMS = cast(Table, LoyaltyProgram.__table__)
_ACCOUNTS = cast(Table, PointsAccount.__table__)
_PROGRAM_FIELDS = tuple(column.key for column in _PROGRAMS.columns)
# Every order that earns reads the brand's program and the buyer's tier: one statement,
# built once, instead of an ORM load of the program and an ORM query for the tier. It
# answers one row even for a brand that never saved its settings (the program's columns are
# then NULL): a one-row anchor, the program joined to it, the tier as a subquery.
_ANCHOR = select(literal(1).label("one")).subquery("anchor")
_BUYER_TIER = select(_ACCOUNTS.c.tier_code).where(
    _ACCOUNTS.c.tenant_id == bindparam("tenant_id"),
    _ACCOUNTS.c.customer_id == bindparam("customer_id")).scalar_subquery()
_PROGRAM_AND_TIER = (
    select(*_PROGRAMS.columns, _BUYER_TIER.label("buyer_tier"))
    .select_from(_ANCHOR.outerjoin(_PROGRAMS, _PROGRAMS.c.tenant_id == bindparam("tenant_id"))))


def earn_key(order_id: str) -> str:
    return f"earn:order:{order_id}"


def _program_and_tier(session: Session, tenant_id: str,
                      customer_id: str) -> tuple[LoyaltyProgram, str | None]:
    """The brand's program (its stored values, or the defaults when the brand never saved
    settings) and the customer's tier."""
    session.flush()  # the Core statement below must see the caller's pending ORM changes
    values = session.connection().execute(_PROGRAM_AND_TIER, {
        "tenant_id": tenant_id, "customer_id": customer_id}).one()._mapping
    if values["tenant_id"] is None:
        return default_program(tenant_id), values["buyer_tier"]
    # A detached copy of the settings, for the arithmetic only (never added to the session).
    return stored(LoyaltyProgram, {name: values[name] for name in _PROGRAM_FIELDS}), \
        values["buyer_tier"]


def earn_for_order(session: Session, actor: Actor, order: Order) -> PointsEntry | None:
    """Credit the points an order earns (once per order, whatever the retries)."""
    if order.customer_id is None or order.total_minor <= 0:
        return None
    program, tier = _program_and_tier(session, order.tenant_id, order.customer_id)
    if not program.enabled:
        return None
    points = points_for(program, order.total_minor, tier_multiplier_bp(program, tier))
    if points <= 0:
        return None
    return credit(session, actor, order.customer_id, points, EntryKind.earn,
                  earn_key(order.id),
                  Source(reason="order", order_id=order.id),
                  expires_at=expiry_for(program, as_utc(order.paid_at)))


def reverse_for_refund(session: Session, actor: Actor, order: Order,
                       refund: Refund) -> PointsEntry | None:
    earned = find_entry(session, order.tenant_id, earn_key(order.id))
    if earned is None or order.customer_id is None:
        return None
    refunded, total = session.execute(select(Order.refunded_minor, Order.total_minor).where(
        Order.tenant_id == order.tenant_id, Order.id == order.id)).one()
    target = earned.points * refunded // total if total else earned.points
    already = session.scalar(select(
        func.coalesce(func.sum(-PointsEntry.points + PointsEntry.unrecovered), 0)).where(
        PointsEntry.tenant_id == order.tenant_id, PointsEntry.order_id == order.id,
        PointsEntry.kind == EntryKind.reversal)) or 0
    points = target - int(already)
    if points <= 0:
        return None
    # The points may have moved with a merge: take them back from the profile that holds
    # them now, from the order's own lot (or the lots it was moved into) first.
    holder = survivor_ids(session, order.tenant_id, [earned.customer_id])[earned.customer_id]
    return debit(session, actor, holder, points, EntryKind.reversal,
                 f"reversal:refund:{refund.id}",
                 Source(reason="refund", order_id=order.id, refund_id=refund.id),
                 partial=True, preferred_lots=moved_lots(session, order.tenant_id, earned.id))
