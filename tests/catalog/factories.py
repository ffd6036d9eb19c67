"""Small factories for catalogue tests. Each commits, as a real request would."""

from __future__ import annotations

from itertools import count

from omniloop.catalog import service
from omniloop.catalog.models import Product
from omniloop.catalog.schemas import ProductCreate
from omniloop.core.db import Session
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant

_seq = count(1)


def make_product(session: Session, tenant: Tenant, sku: str | None = None, *,
                 name: str = "拿鐵", category: str = "咖啡", price_minor: int = 13000,
                 active: bool = True) -> Product:
    product = service.create_product(session, system_actor(tenant.id), ProductCreate(
        sku=sku or f"SKU-{next(_seq):04d}", name=name, category=category,
        price_minor=price_minor, active=active))
    session.commit()
    return product
