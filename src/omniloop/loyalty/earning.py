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

from sqlalchemy import func, select

from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.loyalty.ledger import Source, credit, debit, expiry_for, find_entry
from omniloop.loyalty.models import EntryKind, PointsAccount, PointsEntry
from omniloop.loyalty.program import get_program, points_for, tier_multiplier_bp
from omniloop.orders.models import Order, Refund
from omniloop.tenancy.access import Actor


def earn_key(order_id: str) -> str:
    return f"earn:order:{order_id}"


def earn_for_order(session: Session, actor: Actor, order: Order) -> PointsEntry | None:
    """Credit the points an order earns (once per order, whatever the retries)."""
    if order.customer_id is None or order.total_minor <= 0:
        return None
    program = get_program(session, order.tenant_id)
    if not program.enabled:
        return None
    tier = session.scalar(select(PointsAccount.tier_code).where(
        PointsAccount.tenant_id == order.tenant_id,
        PointsAccount.customer_id == order.customer_id))
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
    return debit(session, actor, earned.customer_id, points, EntryKind.reversal,
                 f"reversal:refund:{refund.id}",
                 Source(reason="refund", order_id=order.id, refund_id=refund.id),
                 partial=True, preferred_lot=earned.id)
