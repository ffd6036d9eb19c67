"""Small factories for tenancy tests. Each commits, as a real request would."""

from __future__ import annotations

from itertools import count

from omniloop.core.db import Session
from omniloop.tenancy import apikeys, staff, stores, tenants
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.models import ApiScope, Role, StaffUser, Store, Tenant
from omniloop.tenancy.schemas import ApiKeyCreate, StaffCreate, StoreCreate

_seq = count(1)
PASSWORD = "correct horse battery"


def make_tenant(session: Session, slug: str | None = None, name: str = "Bean House") -> Tenant:
    tenant = tenants.create_tenant(session, slug=slug or f"brand-{next(_seq)}", name=name)
    session.commit()
    return tenant


def make_store(session: Session, tenant: Tenant, code: str | None = None,
               **fields: object) -> Store:
    values: dict[str, object] = {"code": code or f"S{next(_seq):03d}", "name": "信義店",
                                 "address": "台北市信義區松壽路 11 號",
                                 "latitude": 25.0360, "longitude": 121.5670}
    values.update(fields)
    store = stores.create_store(session, system_actor(tenant.id),
                                StoreCreate.model_validate(values))
    session.commit()
    return store


def make_staff(session: Session, tenant: Tenant, role: Role = Role.owner,
               stores_: list[Store] | None = None, email: str | None = None,
               password: str = PASSWORD) -> StaffUser:
    member = staff.create_staff(session, system_actor(tenant.id), StaffCreate(
        email=email or f"staff{next(_seq)}@example.com", name=f"Staff {role.value}",
        password=password, role=role, store_ids=[s.id for s in stores_ or []]))
    session.commit()
    return member


def make_api_key(session: Session, tenant: Tenant, scopes: list[str] | None = None,
                 store: Store | None = None) -> str:
    _, secret = apikeys.create_api_key(session, system_actor(tenant.id), ApiKeyCreate(
        name=f"key {next(_seq)}", scopes=[ApiScope(s) for s in scopes or ["admin"]],
        store_id=store.id if store else None))
    session.commit()
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def owner_actor(tenant: Tenant) -> Actor:
    return system_actor(tenant.id)


def fresh(session: Session) -> None:
    """End the session's transaction and forget loaded rows, to re-read what requests wrote."""
    session.rollback()
    session.expire_all()
