"""The demo brand behind `omniloop demo`: a Taipei café chain with stores, staff and a menu.

`load_demo(session)` is the one entry point. It is deterministic and idempotent: running it
again on the same database adds nothing and changes nothing. Later loaders (customers,
campaigns, orders…) are added to `load_demo` in order, each looking rows up by natural key
before creating them, and report their totals into the same `DemoResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from omniloop.analytics.demo import load_analytics
from omniloop.catalog import service as catalog
from omniloop.core.db import Session
from omniloop.customers.models import Customer
from omniloop.demo import data
from omniloop.demo.brand import ACTOR_LABEL, DemoLogin, load_brand
from omniloop.demo.campaigns import load_campaigns
from omniloop.demo.history import HISTORY_END, load_history
from omniloop.demo.loops import load_loops
from omniloop.demo.loyalty import configure_program, load_loyalty
from omniloop.orders.models import Order
from omniloop.tenancy import staff, stores
from omniloop.tenancy.access import system_actor

__all__ = ["DEFAULT_CUSTOMERS", "DemoLogin", "DemoResult", "load_demo"]


@dataclass
class DemoResult:
    tenant_id: str
    slug: str
    name: str
    password: str
    logins: list[DemoLogin]
    # Rows of the demo brand after loading, and how many of them this run created.
    counts: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)

    def login_for(self, email: str) -> DemoLogin:
        return next(login for login in self.logins if login.email == email)


DEFAULT_CUSTOMERS = 1500


def load_demo(session: Session, *, customers: int = DEFAULT_CUSTOMERS,
              on_progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Load (or complete) the demo brand in the caller's transaction; the caller commits.

    `customers` sets how many demo members get a history (0: the brand alone).
    """
    brand = load_brand(session)
    tenant = brand.tenant
    actor = system_actor(tenant.id, ACTOR_LABEL)
    store_ids = {s.code: s.id for s in stores.list_stores(session, actor)}
    created = dict(brand.created)
    if customers > 0:
        configure_program(session, actor)
        created.update(load_history(session, actor, timezone=tenant.timezone,
                                    store_ids=store_ids, customers=customers,
                                    on_progress=on_progress))
        # Campaigns come after the history: their claimants are its members. New members
        # and orders they bring are added to the history's counts.
        for kind, count in load_campaigns(session, actor, timezone=tenant.timezone,
                                          store_ids=store_ids, customers=customers).items():
            created[kind] = created.get(kind, 0) + count
        for kind, count in load_loyalty(session, actor, timezone=tenant.timezone,
                                        store_ids=store_ids).items():
            created[kind] = created.get(kind, 0) + count
        # The in-store loop last: its members are the history's, its friends new people.
        for kind, count in load_loops(session, actor, timezone=tenant.timezone,
                                      store_ids=store_ids).items():
            created[kind] = created.get(kind, 0) + count
        load_analytics(session, actor, HISTORY_END)  # RFM snapshots and a saved segment
    counts = {
        "stores": len(store_ids),
        "staff": len(staff.list_staff(session, actor)),
        "products": len(catalog.list_products(session, actor)),
        "customers": session.scalar(select(func.count()).select_from(Customer).where(
            Customer.tenant_id == tenant.id, Customer.merged_into_id.is_(None))) or 0,
        "orders": session.scalar(select(func.count()).select_from(Order).where(
            Order.tenant_id == tenant.id)) or 0,
    }
    return DemoResult(tenant_id=tenant.id, slug=tenant.slug, name=tenant.name,
                      password=data.PASSWORD, logins=brand.logins, counts=counts,
                      created=created)
