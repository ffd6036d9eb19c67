"""Who else must act, in the same transaction, when an order or a refund is recorded.

Loyalty earns on orders and reverses on refunds; `omniloop.wiring` connects them
(core/signals.py says how).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniloop.core.signals import Signal

if TYPE_CHECKING:
    from omniloop.core.db import Session
    from omniloop.orders.models import Order, Refund
    from omniloop.tenancy.access import Actor

order_recorded_signal: Signal[[Session, Actor, Order]] = Signal("order_recorded")
refund_recorded_signal: Signal[[Session, Actor, Order, Refund]] = Signal("refund_recorded")

on_order_recorded = order_recorded_signal.connect
on_refund_recorded = refund_recorded_signal.connect
order_recorded = order_recorded_signal.send
refund_recorded = refund_recorded_signal.send
