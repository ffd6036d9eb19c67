"""Recording one touchpoint event from inside omniloop (orders, coupons, loops, messaging).

Events from outside come in batches through `customers.ingest`. Both are idempotent by the
client event id: recording the same id twice stores one event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.customers.models import Event
from omniloop.tenancy.access import Actor


def record_event(session: Session, actor: Actor, *, client_event_id: str, type: str,
                 channel: str, customer_id: str | None, occurred_at: datetime | None = None,
                 source: str = "", store_id: str | None = None, campaign_id: str | None = None,
                 properties: dict[str, Any] | None = None) -> Event:
    """Store an event unless one with this client event id exists; return the stored one.

    Callers choose `client_event_id` from what makes the event unique (e.g. `order:<id>`),
    so a retried operation never records it twice.
    """
    existing = session.scalar(select(Event).where(Event.tenant_id == actor.tenant_id,
                                                  Event.client_event_id == client_event_id))
    if existing is not None:
        return existing
    event = Event(tenant_id=actor.tenant_id, client_event_id=client_event_id, type=type,
                  channel=channel, customer_id=customer_id, source=source, store_id=store_id,
                  campaign_id=campaign_id, properties=properties or {},
                  occurred_at=occurred_at or utcnow())
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        # Recorded concurrently by a retry of the same operation: keep the first.
        found = session.scalar(select(Event).where(Event.tenant_id == actor.tenant_id,
                                                   Event.client_event_id == client_event_id))
        if found is None:
            raise
        return found
    return event
