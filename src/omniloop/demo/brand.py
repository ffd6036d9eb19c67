"""Loads the demo brand: the tenant, its stores, staff and product catalogue.

Each row is looked up by its natural key (slug, store code, e-mail, SKU) and created only when
missing, through the same service functions the API uses. Rows that exist are left as they
are, so running the loader again changes nothing and never undoes edits made in the admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omniloop.catalog import service as catalog
from omniloop.catalog.schemas import ProductCreate
from omniloop.core.db import Session
from omniloop.core.money import to_minor
from omniloop.demo import data
from omniloop.tenancy import staff, stores, tenants
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.errors import StoreNotFound, TenantNotFound
from omniloop.tenancy.models import Role, Tenant
from omniloop.tenancy.schemas import StaffCreate, StoreCreate

ACTOR_LABEL = "demo loader"


@dataclass(frozen=True)
class DemoLogin:
    role: Role
    email: str
    name: str
    store_codes: tuple[str, ...]


@dataclass
class BrandResult:
    tenant: Tenant
    logins: list[DemoLogin]
    created: dict[str, int] = field(default_factory=dict)


def _tenant(session: Session) -> tuple[Tenant, bool]:
    try:
        return tenants.get_tenant_by_slug(session, data.SLUG), False
    except TenantNotFound:
        return tenants.create_tenant(session, slug=data.SLUG, name=data.NAME,
                                     currency=data.CURRENCY, timezone=data.TIMEZONE,
                                     locale=data.LOCALE), True


def _stores(session: Session, actor: Actor) -> tuple[dict[str, str], int]:
    """Store id by code, and how many were created."""
    ids: dict[str, str] = {}
    created = 0
    for spec in data.STORES:
        try:
            store = stores.get_store_by_code(session, actor, spec.code)
        except StoreNotFound:
            store = stores.create_store(session, actor, StoreCreate.model_validate({
                "code": spec.code, "name": spec.name, "address": spec.address,
                "latitude": spec.latitude, "longitude": spec.longitude, "phone": spec.phone,
                "opening_hours": spec.opening_hours}))
            created += 1
        ids[spec.code] = store.id
    return ids, created


def _staff(session: Session, actor: Actor, store_ids: dict[str, str]) -> int:
    existing = {member.email for member in staff.list_staff(session, actor)}
    created = 0
    for spec in data.STAFF:
        if spec.email in existing:
            continue
        staff.create_staff(session, actor, StaffCreate(
            email=spec.email, name=spec.name, password=data.PASSWORD, role=spec.role,
            store_ids=[store_ids[code] for code in spec.store_codes]))
        created += 1
    return created


def _products(session: Session, actor: Actor, currency: str) -> int:
    created = 0
    for spec in data.PRODUCTS:
        if catalog.find_product_by_sku(session, actor, spec.sku) is not None:
            continue
        catalog.create_product(session, actor, ProductCreate(
            sku=spec.sku, name=spec.name, category=spec.category,
            price_minor=to_minor(spec.price, currency), active=spec.active))
        created += 1
    return created


def load_brand(session: Session) -> BrandResult:
    tenant, tenant_created = _tenant(session)
    actor = system_actor(tenant.id, ACTOR_LABEL)
    store_ids, stores_created = _stores(session, actor)
    staff_created = _staff(session, actor, store_ids)
    products_created = _products(session, actor, tenant.currency)
    logins = [DemoLogin(s.role, s.email, s.name, s.store_codes) for s in data.STAFF]
    return BrandResult(tenant=tenant, logins=logins, created={
        "brand": int(tenant_created), "stores": stores_created, "staff": staff_created,
        "products": products_created})
