"""The store purchases that qualify a referral, as listeners of orders and redemptions
(registered in omniloop.wiring; they run in the transaction that records the purchase)."""

from __future__ import annotations

from omniloop.campaigns.models import Redemption
from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.loops.referrals import qualify
from omniloop.orders.models import Order, OrderChannel
from omniloop.tenancy.access import Actor


def on_order(session: Session, actor: Actor, order: Order) -> None:
    """An order bought in a store (it names the store) by a known customer."""
    if order.customer_id is None or order.store_id is None or order.channel != OrderChannel.store:
        return
    qualify(session, actor, order.customer_id, order.store_id, as_utc(order.paid_at),
            f"order:{order.id}")


def on_redemption(session: Session, actor: Actor, redemption: Redemption) -> None:
    """A coupon redeemed at the POS is a store purchase, with or without an order sent."""
    if redemption.customer_id is None:
        return
    qualify(session, actor, redemption.customer_id, redemption.store_id,
            as_utc(redemption.redeemed_at), f"redemption:{redemption.id}")
