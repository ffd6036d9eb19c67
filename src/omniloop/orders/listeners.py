"""Who else must act, in the same transaction, when an order or a refund is recorded.

Loyalty earns on orders and reverses on refunds; orders must not import loyalty (loyalty is
built on orders). Listeners register here; `omniloop.wiring` names them all, and is loaded
the first time anything is notified, so every path that records orders (API, POS, imports,
the demo, the CLI) runs the same listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omniloop.core.db import Session
    from omniloop.orders.models import Order, Refund
    from omniloop.tenancy.access import Actor

OrderListener = Callable[["Session", "Actor", "Order"], object]
RefundListener = Callable[["Session", "Actor", "Order", "Refund"], object]

_order_listeners: list[OrderListener] = []
_refund_listeners: list[RefundListener] = []
_wired = False


def on_order_recorded(listener: OrderListener) -> OrderListener:
    if listener not in _order_listeners:
        _order_listeners.append(listener)
    return listener


def on_refund_recorded(listener: RefundListener) -> RefundListener:
    if listener not in _refund_listeners:
        _refund_listeners.append(listener)
    return listener


def _wire() -> None:
    global _wired
    if not _wired:
        import omniloop.wiring  # noqa: F401  (registers the listeners)

        _wired = True


def order_recorded(session: Session, actor: Actor, order: Order) -> None:
    _wire()
    for listener in _order_listeners:
        listener(session, actor, order)


def refund_recorded(session: Session, actor: Actor, order: Order, refund: Refund) -> None:
    _wire()
    for listener in _refund_listeners:
        listener(session, actor, order, refund)
