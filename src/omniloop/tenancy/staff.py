"""Staff accounts: who signs in to the admin and POS, in which role, for which stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.security import hash_password, password_needs_rehash, verify_password
from omniloop.core.settings import get_settings
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission, staff_actor
from omniloop.tenancy.errors import (
    AccountLocked,
    CannotRemoveLastOwner,
    InvalidCredentials,
    StaffEmailTaken,
    StaffNotFound,
    StoreNotFound,
    StoresRequired,
)
from omniloop.tenancy.models import Role, StaffStore, StaffUser, Store
from omniloop.tenancy.schemas import StaffCreate, StaffUpdate

STORE_SCOPED_ROLES = (Role.store_manager, Role.cashier)


def store_ids_of(session: Session, tenant_id: str, staff_id: str) -> list[str]:
    return list(session.scalars(
        select(StaffStore.store_id).where(StaffStore.tenant_id == tenant_id,
                                          StaffStore.staff_id == staff_id)
        .order_by(StaffStore.store_id)))


def store_ids_by_staff(session: Session, tenant_id: str) -> dict[str, list[str]]:
    """Every staff member's stores in one query, for list pages."""
    rows = session.execute(select(StaffStore.staff_id, StaffStore.store_id)
                           .where(StaffStore.tenant_id == tenant_id))
    result: dict[str, list[str]] = {}
    for staff_id, store_id in rows:
        result.setdefault(staff_id, []).append(store_id)
    return result


def actor_for(session: Session, staff: StaffUser, ip: str | None = None) -> Actor:
    stores = frozenset(store_ids_of(session, staff.tenant_id, staff.id))
    return staff_actor(staff.tenant_id, staff.id, f"{staff.name} <{staff.email}>", staff.role,
                       stores, ip)


def list_staff(session: Session, actor: Actor) -> list[StaffUser]:
    actor.require(Permission.staff_read)
    query = select(StaffUser).where(StaffUser.tenant_id == actor.tenant_id)
    if actor.store_ids is not None:
        query = query.where(StaffUser.id.in_(
            select(StaffStore.staff_id).where(StaffStore.tenant_id == actor.tenant_id,
                                              StaffStore.store_id.in_(actor.store_ids))))
    return list(session.scalars(query.order_by(StaffUser.name, StaffUser.email)))


def get_staff(session: Session, actor: Actor, staff_id: str) -> StaffUser:
    actor.require(Permission.staff_read)
    staff = session.get(StaffUser, (actor.tenant_id, staff_id))
    if staff is None:
        raise StaffNotFound()
    if actor.store_ids is not None and not (
            set(store_ids_of(session, actor.tenant_id, staff_id)) & actor.store_ids):
        raise StaffNotFound()
    return staff


def _check_stores(session: Session, actor: Actor, role: Role, store_ids: list[str]) -> list[str]:
    wanted = sorted(set(store_ids))
    if role in STORE_SCOPED_ROLES and not wanted:
        raise StoresRequired()
    if wanted:
        found = set(session.scalars(select(Store.id).where(Store.tenant_id == actor.tenant_id,
                                                           Store.id.in_(wanted))))
        if found != set(wanted):
            raise StoreNotFound()
    return wanted if role in STORE_SCOPED_ROLES else []


def _set_stores(session: Session, tenant_id: str, staff_id: str, store_ids: list[str]) -> None:
    session.execute(delete(StaffStore).where(StaffStore.tenant_id == tenant_id,
                                             StaffStore.staff_id == staff_id))
    session.add_all(StaffStore(tenant_id=tenant_id, staff_id=staff_id, store_id=store_id)
                    for store_id in store_ids)


def create_staff(session: Session, actor: Actor, data: StaffCreate) -> StaffUser:
    actor.require(Permission.staff_manage)
    email = data.email.lower()
    if session.scalar(select(StaffUser.id).where(StaffUser.tenant_id == actor.tenant_id,
                                                 StaffUser.email == email)):
        raise StaffEmailTaken(email=email)
    store_ids = _check_stores(session, actor, data.role, data.store_ids)
    staff = StaffUser(tenant_id=actor.tenant_id, email=email, name=data.name,
                      password_hash=hash_password(data.password), role=data.role,
                      locale=data.locale)
    session.add(staff)
    try:
        session.flush()
    except IntegrityError:
        raise StaffEmailTaken(email=email) from None
    _set_stores(session, actor.tenant_id, staff.id, store_ids)
    session.flush()
    audit.record(session, actor, "staff.create", "staff", staff.id,
                 {"email": email, "name": data.name, "role": data.role.value,
                  "store_ids": store_ids})
    return staff


def _active_owner_count(session: Session, tenant_id: str) -> int:
    return session.scalar(select(func.count()).select_from(StaffUser).where(
        StaffUser.tenant_id == tenant_id, StaffUser.role == Role.owner,
        StaffUser.active.is_(True))) or 0


def update_staff(session: Session, actor: Actor, staff_id: str, data: StaffUpdate) -> StaffUser:
    actor.require(Permission.staff_manage)
    staff = get_staff(session, actor, staff_id)
    before: dict[str, Any] = {"name": staff.name, "role": staff.role.value,
                              "active": staff.active, "locale": staff.locale,
                              "store_ids": store_ids_of(session, actor.tenant_id, staff.id)}
    role = data.role or staff.role
    demotes_owner = staff.role == Role.owner and (role != Role.owner or data.active is False)
    if demotes_owner and staff.active and _active_owner_count(session, actor.tenant_id) <= 1:
        raise CannotRemoveLastOwner()
    if data.store_ids is not None or data.role is not None:
        wanted = data.store_ids if data.store_ids is not None else before["store_ids"]
        _set_stores(session, actor.tenant_id, staff.id, _check_stores(session, actor, role, wanted))
    staff.role = role
    if data.name is not None:
        staff.name = data.name
    if data.active is not None:
        staff.active = data.active
        if not data.active:
            staff.session_epoch += 1
    if "locale" in data.model_fields_set:
        staff.locale = data.locale
    details: dict[str, Any] = {}
    if data.password is not None:
        staff.password_hash = hash_password(data.password)
        staff.session_epoch += 1
        staff.failed_logins = 0
        staff.locked_until = None
        details["password"] = "changed"
    session.flush()
    after = {"name": staff.name, "role": staff.role.value, "active": staff.active,
             "locale": staff.locale,
             "store_ids": store_ids_of(session, actor.tenant_id, staff.id)}
    details.update(audit.changes(before, after))
    if details:
        audit.record(session, actor, "staff.update", "staff", staff.id, details)
    return staff


def authenticate(session: Session, tenant_id: str, email: str, password: str,
                 ip: str | None = None) -> StaffUser:
    """Check a sign-in. Counts failures and locks the account after too many.

    The failure count is written even though the sign-in fails, so the caller must commit
    on `InvalidCredentials` and `AccountLocked` rather than roll back. Counting and locking
    are single conditional UPDATEs, so parallel guesses cannot lose a count or lock twice.
    """
    staff = session.scalar(select(StaffUser).where(StaffUser.tenant_id == tenant_id,
                                                   StaffUser.email == email.strip().lower()))
    now = utcnow()
    if staff is not None and staff.locked_until is not None and as_utc(staff.locked_until) > now:
        raise AccountLocked(minutes=_minutes_left(as_utc(staff.locked_until) - now))
    ok = verify_password(staff.password_hash if staff else None, password)
    if staff is None or not ok or not staff.active:
        if staff is not None:
            _count_failure(session, staff, now, ip)
        raise InvalidCredentials()
    staff.failed_logins = 0
    staff.locked_until = None
    staff.last_login_at = now
    if password_needs_rehash(staff.password_hash):
        staff.password_hash = hash_password(password)
    session.flush()
    return staff


def _minutes_left(remaining: timedelta) -> int:
    return max(1, -(-int(remaining.total_seconds()) // 60))


def _count_failure(session: Session, staff: StaffUser, now: datetime, ip: str | None) -> None:
    settings = get_settings()
    this_staff = (StaffUser.tenant_id == staff.tenant_id, StaffUser.id == staff.id)
    failures = session.execute(
        update(StaffUser).where(*this_staff)
        .values(failed_logins=StaffUser.failed_logins + 1)
        .returning(StaffUser.failed_logins)
        .execution_options(synchronize_session=False)).scalar_one()
    if failures < settings.login_max_failures:
        return
    until = now + timedelta(seconds=settings.login_lockout_seconds)
    locked = session.execute(
        update(StaffUser).where(*this_staff, or_(StaffUser.locked_until.is_(None),
                                                 StaffUser.locked_until <= now))
        .values(locked_until=until, failed_logins=0)
        .execution_options(synchronize_session=False))
    if locked.rowcount == 1:  # type: ignore[attr-defined]
        audit.record(session, actor_for(session, staff, ip), "staff.locked", "staff", staff.id,
                     {"until": until})
        session.flush()
    raise AccountLocked(minutes=_minutes_left(until - now))


def end_sessions(session: Session, staff: StaffUser) -> None:
    """Invalidate every session cookie of this staff member (logout)."""
    staff.session_epoch += 1
    session.flush()
