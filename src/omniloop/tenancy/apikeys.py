"""API keys for POS systems, e-commerce integrations and operators' scripts.

A key is shown once when created; only its SHA-256 digest is stored. Keys carry scopes
(`pos`, `ingest`, `admin`) and may be bound to one store, which then is the only store the key
can see or act for.

Every API call checks its key, and the check (a read transaction of its own, a look-up)
cost more than many calls' own work. So the process remembers the keys it has checked for
`KEY_CACHE_SECONDS` (`cached_actor`): a key seen in that time is answered from memory,
without the database or a thread. Revoking a key through this process (the API, the admin
pages) forgets it at once, and again when the revoking transaction commits, so its next call
is refused; a key revoked by another process (a second server on the same database) stops
working within `KEY_CACHE_SECONDS`. A key whose `last_used_at` is due for an update is always
checked against the database, which records the use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import cast

from sqlalchemy import Table, bindparam, or_, select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session, after_commit, get_database
from omniloop.core.errors import ApiKeyRevoked, InvalidApiKey
from omniloop.core.security import digest_api_key, random_token
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission, api_key_actor
from omniloop.tenancy.errors import ApiKeyNotFound
from omniloop.tenancy.models import ApiKey
from omniloop.tenancy.schemas import ApiKeyCreate
from omniloop.tenancy.stores import get_store

KEY_PREFIX = "olk_"
# Writing last_used_at on every call would turn each read into a write; once a minute is
# precise enough to answer "is this key still in use?".
LAST_USED_RESOLUTION = timedelta(minutes=1)
# How long this process answers a key it has checked without asking the database again: the
# longest a key revoked by another process keeps working here.
KEY_CACHE_SECONDS = 5.0

_KEYS = cast(Table, ApiKey.__table__)
# Built once: building the ORM query cost about three times what SQLite takes to answer it.
_KEY_BY_DIGEST = select(
    _KEYS.c.tenant_id, _KEYS.c.id, _KEYS.c.name, _KEYS.c.key_prefix, _KEYS.c.scopes,
    _KEYS.c.store_id, _KEYS.c.revoked_at, _KEYS.c.last_used_at,
).where(_KEYS.c.key_digest == bindparam("digest"))


@dataclass(frozen=True)
class _Checked:
    """A key this process found valid, when, and against which database."""

    database: object
    checked_at: float  # time.monotonic()
    tenant_id: str
    key_id: str
    label: str
    scopes: tuple[str, ...]
    store_id: str | None
    last_used_at: datetime | None


_checked: dict[str, _Checked] = {}  # by key digest
_checked_lock = threading.Lock()
# Counts forgets: a check that read a key before a forget does not remember what it read.
_forgets = [0]


def create_api_key(session: Session, actor: Actor, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    """Returns the stored key and the plaintext secret, which is never retrievable again."""
    actor.require(Permission.apikeys_manage)
    if data.store_id is not None:
        get_store(session, actor, data.store_id)
    secret = KEY_PREFIX + random_token(32)
    scopes = sorted({scope.value for scope in data.scopes})
    key = ApiKey(tenant_id=actor.tenant_id, name=data.name, key_prefix=secret[:12],
                 key_digest=digest_api_key(secret), scopes=scopes, store_id=data.store_id,
                 created_by=actor.label)
    session.add(key)
    session.flush()
    audit.record(session, actor, "api_key.create", "api_key", key.id,
                 {"name": data.name, "scopes": scopes, "store_id": data.store_id})
    return key, secret


def list_api_keys(session: Session, actor: Actor) -> list[ApiKey]:
    actor.require(Permission.apikeys_manage)
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == actor.tenant_id)
                                .order_by(ApiKey.created_at.desc())))


def revoke_api_key(session: Session, actor: Actor, key_id: str) -> ApiKey:
    actor.require(Permission.apikeys_manage)
    key = session.get(ApiKey, (actor.tenant_id, key_id))
    if key is None:
        raise ApiKeyNotFound()
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "api_key.revoke", "api_key", key.id, {"name": key.name})
    # Forget the key now, and again once the revocation is committed: a call checking the
    # key meanwhile still read it unrevoked and may have remembered it.
    digest = key.key_digest
    forget_key(digest)
    after_commit(session, partial(forget_key, digest))
    return key


def forget_key(digest: str) -> None:
    """Check the key with this digest against the database on its next use."""
    with _checked_lock:
        _forgets[0] += 1
        _checked.pop(digest, None)


def forget_all_keys() -> None:
    with _checked_lock:
        _forgets[0] += 1
        _checked.clear()


def cached_actor(secret: str, ip: str | None = None) -> Actor | None:
    """The key's actor if this process checked the key against the current database within
    the last `KEY_CACHE_SECONDS` and its use needs no recording; otherwise None, and the
    caller checks it with `authenticate_api_key`. Needs no database and no thread."""
    if not secret.startswith(KEY_PREFIX):
        return None
    checked = _checked.get(digest_api_key(secret))
    if (checked is None or checked.database is not get_database()
            or time.monotonic() - checked.checked_at > KEY_CACHE_SECONDS):
        return None
    if (checked.last_used_at is None
            or utcnow() - checked.last_used_at >= LAST_USED_RESOLUTION):
        return None
    return api_key_actor(checked.tenant_id, checked.key_id, checked.label,
                         list(checked.scopes), checked.store_id, ip)


def authenticate_api_key(session: Session, secret: str, ip: str | None = None) -> Actor:
    """Check the key against the database (recording its use, at most once a minute), and
    remember it for `cached_actor`."""
    if not secret.startswith(KEY_PREFIX):
        raise InvalidApiKey()
    digest = digest_api_key(secret)
    checked_at, forgets = time.monotonic(), _forgets[0]
    key = session.connection().execute(_KEY_BY_DIGEST, {"digest": digest}).first()
    if key is None:
        raise InvalidApiKey()
    if key.revoked_at is not None:
        forget_key(digest)
        raise ApiKeyRevoked()
    now = utcnow()
    last_used = as_utc(key.last_used_at) if key.last_used_at is not None else None
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        _touch(key.tenant_id, key.id, now)
        last_used = now
    label = f"API key {key.name} ({key.key_prefix}…)"
    with _checked_lock:
        if _forgets[0] == forgets:  # no revocation since the key was read
            _checked[digest] = _Checked(
                database=get_database(), checked_at=checked_at, tenant_id=key.tenant_id,
                key_id=key.id, label=label, scopes=tuple(key.scopes), store_id=key.store_id,
                last_used_at=last_used)
    return api_key_actor(key.tenant_id, key.id, label, key.scopes, key.store_id, ip)


def _touch(tenant_id: str, key_id: str, now: datetime) -> None:
    """Record use in a short transaction of its own.

    Kept out of the request's transaction so that read-only requests stay read-only and a
    failed request still counts as use of the key.
    """
    with get_database().unit_of_work() as session:
        session.execute(update(ApiKey).where(
            ApiKey.tenant_id == tenant_id, ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        ).values(last_used_at=now))
