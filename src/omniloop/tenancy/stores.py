"""Stores: the physical places where coupons are redeemed and customers visit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from omniloop.core.db import Session
from omniloop.core.errors import N_, ValidationFailed
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.errors import StoreCodeTaken, StoreNotFound
from omniloop.tenancy.models import Store
from omniloop.tenancy.schemas import StoreCreate, StoreUpdate

_AUDITED = ("code", "name", "address", "latitude", "longitude", "phone", "opening_hours",
            "active")


def _snapshot(store: Store) -> dict[str, Any]:
    return {field: getattr(store, field) for field in _AUDITED}


def list_stores(session: Session, actor: Actor, *, include_inactive: bool = True) -> list[Store]:
    actor.require(Permission.stores_read)
    query = select(Store).where(Store.tenant_id == actor.tenant_id)
    if actor.store_ids is not None:
        query = query.where(Store.id.in_(actor.store_ids))
    if not include_inactive:
        query = query.where(Store.active.is_(True))
    return list(session.scalars(query.order_by(Store.code)))


def count_stores(session: Session, actor: Actor) -> int:
    actor.require(Permission.stores_read)
    query = select(func.count()).select_from(Store).where(Store.tenant_id == actor.tenant_id)
    if actor.store_ids is not None:
        query = query.where(Store.id.in_(actor.store_ids))
    return session.scalar(query) or 0


def get_store(session: Session, actor: Actor, store_id: str) -> Store:
    """A store of the actor's tenant that the actor may see; anything else is 'not found'."""
    actor.require(Permission.stores_read)
    store = session.get(Store, (actor.tenant_id, store_id))
    if store is None or not actor.sees_store(store.id):
        raise StoreNotFound()
    return store


def get_store_by_code(session: Session, actor: Actor, code: str) -> Store:
    actor.require(Permission.stores_read)
    store = session.scalar(select(Store).where(Store.tenant_id == actor.tenant_id,
                                               Store.code == code.strip().upper()))
    if store is None or not actor.sees_store(store.id):
        raise StoreNotFound()
    return store


def create_store(session: Session, actor: Actor, data: StoreCreate) -> Store:
    actor.require(Permission.stores_create)
    if session.scalar(select(Store.id).where(Store.tenant_id == actor.tenant_id,
                                             Store.code == data.code)):
        raise StoreCodeTaken(code=data.code)
    store = Store(tenant_id=actor.tenant_id, **data.model_dump(mode="json"))
    session.add(store)
    try:
        session.flush()
    except IntegrityError:
        raise StoreCodeTaken(code=data.code) from None
    audit.record(session, actor, "store.create", "store", store.id, _snapshot(store))
    return store


def update_store(session: Session, actor: Actor, store_id: str, data: StoreUpdate) -> Store:
    actor.require(Permission.stores_update)
    store = get_store(session, actor, store_id)
    before = _snapshot(store)
    updates = data.model_dump(mode="json", exclude_unset=True)
    latitude = updates.get("latitude", store.latitude)
    longitude = updates.get("longitude", store.longitude)
    if (latitude is None) != (longitude is None):
        raise ValidationFailed(N_("Give both latitude and longitude, or neither."))
    for field, value in updates.items():
        setattr(store, field, value)
    session.flush()
    diff = audit.changes(before, _snapshot(store))
    if diff:
        audit.record(session, actor, "store.update", "store", store.id, diff)
    return store
