"""What the orders module adds to the customers module's views of one person: the section
of the 360 page, and the orders in the personal-data export (PDPA / GDPR).

Importing this module registers both; the app imports it with the page routes."""

from __future__ import annotations

from typing import Any

from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_export_section
from omniloop.customers.sections import ProfileSection, register_section
from omniloop.orders.schemas import OrderOut
from omniloop.orders.service import (
    list_customer_orders,
    list_orders_of_profiles,
    spend_summary,
)
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor
from omniloop.tenancy.stores import list_stores

RECENT_ORDERS = 20


def _orders_section(session: Session, actor: Actor, customer: Customer,
                    ids: set[str]) -> dict[str, Any]:
    return {"summary": spend_summary(session, actor, ids),
            "orders": list_customer_orders(session, actor, customer.id, limit=RECENT_ORDERS),
            "store_names": {s.id: s.name for s in list_stores(session, actor)}}


def _export_orders(session: Session, actor: Actor, customer: Customer,
                   ids: set[str]) -> list[dict[str, Any]]:
    orders = list_orders_of_profiles(session, actor, ids)
    return [OrderOut.model_validate(order).model_dump(mode="json") for order in orders]


register_section(ProfileSection("orders", N_("Orders"), "admin/sections/orders.html", 30,
                                _orders_section))
register_export_section("orders", _export_orders)
audit.register_action("order.refund", N_("Order refunded"))
