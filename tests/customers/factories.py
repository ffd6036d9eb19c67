"""Small factories for customers tests. Each commits, as a real request would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.customers.identify import identify
from omniloop.customers.models import IdentityKind
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant

TAIPEI = ZoneInfo("Asia/Taipei")


def make_customer(session: Session, tenant: Tenant, *identities: tuple[str, str],
                  name: str | None = None) -> str:
    """A customer with these (kind, value) identities, through identify; its id."""
    result = identify(session, system_actor(tenant.id),
                      [IdentityIn(kind=IdentityKind(k), value=v) for k, v in identities],
                      Traits(name=name) if name else None)
    session.commit()
    return result.customer.id


def event_json(client_id: str, *, type: str = "page_view", minutes_ago: float = 10,
               identity: tuple[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """One event as POST /api/v1/events takes it, in Taipei time."""
    at = (utcnow() - timedelta(minutes=minutes_ago)).astimezone(TAIPEI).isoformat()
    body: dict[str, Any] = {"id": client_id, "type": type, "occurred_at": at, **fields}
    if identity is not None:
        body["identity"] = {"kind": identity[0], "value": identity[1]}
    return body
