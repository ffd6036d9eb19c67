"""API keys for POS systems, e-commerce integrations and operators' scripts.

A key is shown once when created; only its SHA-256 digest is stored. Keys carry scopes
(`pos`, `ingest`, `admin`) and may be bound to one store, which then is the only store the key
can see or act for.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session, get_database
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
    return key


def authenticate_api_key(session: Session, secret: str, ip: str | None = None) -> Actor:
    if not secret.startswith(KEY_PREFIX):
        raise InvalidApiKey()
    key = session.scalar(select(ApiKey).where(ApiKey.key_digest == digest_api_key(secret)))
    if key is None:
        raise InvalidApiKey()
    if key.revoked_at is not None:
        raise ApiKeyRevoked()
    now = utcnow()
    if key.last_used_at is None or now - as_utc(key.last_used_at) >= LAST_USED_RESOLUTION:
        _touch(key.tenant_id, key.id, now)
    return api_key_actor(key.tenant_id, key.id, f"API key {key.name} ({key.key_prefix}…)",
                         key.scopes, key.store_id, ip)


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
