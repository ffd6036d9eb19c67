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
from omniloop.core.db import Session
from omniloop.core.prepared import Prepared
from omniloop.customers.profiles import survivor_ids
from omniloop.loyalty.ledger import Source, credit_entry, debit, expiry_for, find_entry
from omniloop.loyalty.merging import moved_lots
from omniloop.loyalty.models import EntryKind, LoyaltyProgram, PointsAccount, PointsEntry
from omniloop.loyalty.program import (
    EARN_TERMS_FIELDS,
    EarnTerms,
    default_terms,
    points_for,
    tier_multiplier_bp,
)
from omniloop.orders.models import Order, Refund
from omniloop.tenancy.access import Actor

_PROGRAMS = cast(Table, LoyaltyProgram.__table__)
_ACCOUNTS = cast(Table, PointsAccount.__table__)
_ENTRIES = cast(Table, PointsEntry.__table__)
# Every order that earns reads the brand's earning settings, the buyer's tier and whether
# the order has earned already (a retry): one prepared statement instead of an ORM load of
# the program, an ORM query for the tier and the ledger's look-up of the key. It answers
# one row even for a brand that never saved its settings (the program's columns are then
# NULL): a one-row anchor, the program joined to it, the tier and the entry as subqueries.
_ANCHOR = select(literal(1).label("one")).subquery("anchor")
_BUYER_TIER = select(_ACCOUNTS.c.tier_code).where(
    _ACCOUNTS.c.tenant_id == bindparam("tenant_id"),
    _ACCOUNTS.c.customer_id == bindparam("customer_id")).scalar_subquery()
_EARNED = select(_ENTRIES.c.id).where(
    _ENTRIES.c.tenant_id == bindparam("ledger_tenant_id"),
    _ENTRIES.c.idempotency_key == bindparam("key")).scalar_subquery()
_EARNING = Prepared(
    select(_EARNED.label("earned"), _BUYER_TIER.label("buyer_tier"), _PROGRAMS.c.tenant_id,
           *(_PROGRAMS.c[name] for name in EARN_TERMS_FIELDS))
    .select_from(_ANCHOR.outerjoin(_PROGRAMS, _PROGRAMS.c.tenant_id == bindparam("tenant_id"))))


def earn_key(order_id: str) -> str:
    return f"earn:order:{order_id}"


def earn_for_order(session: Session, actor: Actor, order: Order) -> str | None:
    """Credit the points an order earns (once per order, whatever the retries): the id of
    its earn entry, or None when it earns nothing. No ORM entry is made: every order runs
    this while it holds SQLite's write lock (`find_entry` reads the entry)."""
    customer_id = order.customer_id
    total_minor = order.total_minor
    if customer_id is None or total_minor <= 0:
        return None
    key = earn_key(order.id)
    session.flush()  # the statement below must see the caller's pending ORM changes
    row = _EARNING.first(session, {"tenant_id": order.tenant_id, "customer_id": customer_id,
                                   "ledger_tenant_id": actor.tenant_id, "key": key})
    assert row is not None  # the anchor's one row
    earned, tier, stored_for, *values = row
    # The brand's settings, or the defaults when it never saved its own.
    terms = default_terms() if stored_for is None else EarnTerms(*values)
    if not terms.enabled:
        return None
    points = points_for(terms, total_minor, tier_multiplier_bp(terms, tier))
    if points <= 0:
        return None
    if earned is not None:
        return cast(str, earned)  # a retry: the order has its points
    entry_id, _written = credit_entry(
        session, actor, customer_id, points, EntryKind.earn, key,
        Source(reason="order", order_id=order.id),
        expires_at=expiry_for(terms, as_utc(order.paid_at)), key_checked=True)
    return entry_id


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
