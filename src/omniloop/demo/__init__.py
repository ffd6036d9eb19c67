"""The demo brand behind `omniloop demo`: a Taipei café chain with stores, staff and a menu.

`load_demo(session)` is the one entry point. It is deterministic and idempotent: running it
again on the same database adds nothing and changes nothing. Later loaders (customers,
campaigns, orders…) are added to `load_demo` in order, each looking rows up by natural key
before creating them, and report their totals into the same `DemoResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omniloop.catalog import service as catalog
from omniloop.core.db import Session
from omniloop.demo import data
from omniloop.demo.brand import ACTOR_LABEL, DemoLogin, load_brand
from omniloop.tenancy import staff, stores
from omniloop.tenancy.access import system_actor

__all__ = ["DemoLogin", "DemoResult", "load_demo"]


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


def load_demo(session: Session) -> DemoResult:
    """Load (or complete) the demo brand in the caller's transaction; the caller commits."""
    brand = load_brand(session)
    tenant = brand.tenant
    actor = system_actor(tenant.id, ACTOR_LABEL)
    counts = {
        "stores": stores.count_stores(session, actor),
        "staff": len(staff.list_staff(session, actor)),
        "products": len(catalog.list_products(session, actor)),
    }
    return DemoResult(tenant_id=tenant.id, slug=tenant.slug, name=tenant.name,
                      password=data.PASSWORD, logins=brand.logins, counts=counts,
                      created=dict(brand.created))
