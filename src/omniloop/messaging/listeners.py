"""What messaging does when other modules record things (connected in omniloop.wiring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, or_, select

from omniloop.core.db import Session
from omniloop.core.prepared import Prepared
from omniloop.messaging import journeys, webhooks
from omniloop.messaging.models import Journey
from omniloop.orders.models import Order, Refund
from omniloop.tenancy.access import Actor

if TYPE_CHECKING:
    from omniloop.loops.models import Feedback


# Prepared once: every order of a known customer asks it. The triggers are spelled out
# (`in_` would make an expanding parameter, which `Prepared` refuses).
_PURCHASE_TRIGGERS = Prepared(select(Journey.trigger).where(
    Journey.tenant_id == bindparam("tenant_id"), Journey.active.is_(True),
    or_(Journey.trigger == "purchase", Journey.trigger == "first_purchase")))


def announce_order(session: Session, actor: Actor, order: Order) -> None:
    """`order.recorded` to subscribed endpoints, in the order's own transaction (its data
    built only when some endpoint subscribed: every order comes here)."""
    endpoint_ids = webhooks.subscribed(session, actor.tenant_id, "order.recorded")
    if not endpoint_ids:
        return
    webhooks.emit_to(session, actor, endpoint_ids, "order.recorded", order.id, {
        "id": order.id, "external_id": order.external_id, "source": order.source,
        "channel": order.channel.value, "store_id": order.store_id,
        "customer_id": order.customer_id, "currency": order.currency,
        "total_minor": order.total_minor, "paid_at": order.paid_at.isoformat()})


def enter_purchase_journeys(session: Session, actor: Actor, order: Order) -> None:
    """`purchase` journeys for every order of a known customer; `first_purchase` once per
    person (their first order across merged profiles)."""
    if order.customer_id is None:
        return
    from omniloop.customers.profiles import profile_ids, survivor_ids

    # One cheap look first: most brands have no purchase journey, and orders are a hot path
    # (imports, the demo, POS traffic).
    triggers = {trigger for (trigger,) in _PURCHASE_TRIGGERS.rows(
        session, {"tenant_id": actor.tenant_id})}
    if not triggers:
        return
    survivor = survivor_ids(session, actor.tenant_id, [order.customer_id])[order.customer_id]
    if "purchase" in triggers:
        journeys.enter(session, actor.tenant_id, "purchase", survivor, f"order:{order.id}")
    if "first_purchase" not in triggers:
        return
    orders = session.scalar(select(func.count()).select_from(Order).where(
        Order.tenant_id == actor.tenant_id,
        Order.customer_id.in_(profile_ids(session, actor.tenant_id, survivor))))
    if orders == 1:
        journeys.enter(session, actor.tenant_id, "first_purchase", survivor,
                       f"first_purchase:{survivor}")


def announce_refund(session: Session, actor: Actor, order: Order, refund: Refund) -> None:
    webhooks.emit(session, actor, "order.refunded", refund.id, {
        "id": refund.id, "order_id": order.id, "external_id": refund.external_id,
        "amount_minor": refund.amount_minor, "currency": refund.currency,
        "reason": refund.reason, "refunded_at": refund.refunded_at.isoformat()})


def enter_low_feedback_journeys(session: Session, actor: Actor, feedback: Feedback) -> None:
    """`low_feedback` journeys, once per feedback, in the feedback's transaction."""
    from omniloop.customers.profiles import survivor_ids

    survivor = survivor_ids(session, actor.tenant_id,
                            [feedback.customer_id])[feedback.customer_id]
    journeys.enter(session, actor.tenant_id, "low_feedback", survivor,
                   f"feedback:{feedback.id}")
