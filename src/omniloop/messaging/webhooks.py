"""Outgoing webhooks for integrators, signed the Standard Webhooks way.

An endpoint subscribes to event types. `emit` writes one outbox row per subscribed endpoint
in the caller's transaction, so an order that commits is announced and one that rolls back
is not. The worker POSTs the JSON body with `webhook-id` (the outbox id: the receiver's
idempotency key, the same on every retry), `webhook-timestamp` and `webhook-signature`
(`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed by the endpoint's `whsec_`
secret), retries non-2xx answers with exponential backoff, and dead-letters after the last
try; dead letters can be replayed from the admin or the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import bindparam, select

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.prepared import Prepared
from omniloop.messaging import crypto
from omniloop.messaging.errors import WebhookEndpointInvalid, WebhookEndpointNotFound
from omniloop.messaging.models import OutboxChannel, Purpose, WebhookEndpoint
from omniloop.messaging.outbox import Draft, enqueue_many
from omniloop.messaging.senders import new_webhook_secret
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

# The events integrators can subscribe to, with what the admin calls them.
EVENT_TYPES: dict[str, str] = {
    "order.recorded": N_("An order was recorded"),
    "order.refunded": N_("An order was refunded"),
    "line.followed": N_("Someone followed the LINE account"),
    "line.unfollowed": N_("Someone unfollowed the LINE account"),
    "message.dead": N_("A message could not be delivered"),
}
MAX_ENDPOINTS = 20


def _check(url: str, event_types: list[str]) -> tuple[str, list[str]]:
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 500:
        raise WebhookEndpointInvalid(problem="the URL must be an http(s) address.")
    wanted = sorted(set(event_types))
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown or not wanted:
        raise WebhookEndpointInvalid(problem="choose event types among: "
                                     + ", ".join(EVENT_TYPES) + ".")
    return url, wanted


def create_endpoint(session: Session, actor: Actor, url: str, event_types: list[str],
                    description: str = "") -> tuple[WebhookEndpoint, str]:
    """A new subscription and its secret (shown this once; stored encrypted)."""
    actor.require(Permission.apikeys_manage)
    url, wanted = _check(url, event_types)
    count = len(list_endpoints(session, actor))
    if count >= MAX_ENDPOINTS:
        raise WebhookEndpointInvalid(problem=f"at most {MAX_ENDPOINTS} endpoints per brand.")
    secret = new_webhook_secret()
    endpoint = WebhookEndpoint(tenant_id=actor.tenant_id, url=url, event_types=wanted,
                               secret=crypto.encrypt({"secret": secret}),
                               description=description.strip()[:200], active=True)
    session.add(endpoint)
    session.flush()
    audit.record(session, actor, "webhook.create", "webhook_endpoint", endpoint.id,
                 {"url": url, "event_types": wanted})
    return endpoint, secret


def get_endpoint(session: Session, actor: Actor, endpoint_id: str) -> WebhookEndpoint:
    actor.require(Permission.apikeys_manage)
    endpoint = session.get(WebhookEndpoint, (actor.tenant_id, endpoint_id))
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint


def list_endpoints(session: Session, actor: Actor) -> list[WebhookEndpoint]:
    actor.require(Permission.apikeys_manage)
    return list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == actor.tenant_id).order_by(WebhookEndpoint.created_at)))


def update_endpoint(session: Session, actor: Actor, endpoint_id: str, *, url: str,
                    event_types: list[str], active: bool,
                    description: str = "") -> WebhookEndpoint:
    endpoint = get_endpoint(session, actor, endpoint_id)
    endpoint.url, endpoint.event_types = _check(url, event_types)
    endpoint.active = active
    endpoint.description = description.strip()[:200]
    session.flush()
    audit.record(session, actor, "webhook.update", "webhook_endpoint", endpoint.id,
                 {"url": endpoint.url, "event_types": endpoint.event_types, "active": active})
    return endpoint


def endpoint_secret(session: Session, actor: Actor, endpoint_id: str) -> str:
    return str(crypto.decrypt(get_endpoint(session, actor, endpoint_id).secret)["secret"])


# Every order and refund of every brand comes through `emit`: one query on the brand's
# endpoints (its primary-key prefix), reading only what the choice needs, prepared once.
_ACTIVE_ENDPOINTS = Prepared(select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
    WebhookEndpoint.tenant_id == bindparam("tenant_id"), WebhookEndpoint.active.is_(True)))


def subscribed(session: Session, tenant_id: str, event_type: str) -> list[str]:
    """The brand's active endpoints subscribed to `event_type`: most brands have none, and a
    caller on a hot path (every order) asks first, before it builds the event's data."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    return [endpoint_id for endpoint_id, types in _ACTIVE_ENDPOINTS.rows(
        session, {"tenant_id": tenant_id}) if event_type in types]


def emit(session: Session, actor: Actor, event_type: str, key: str, data: dict[str, Any],
         *, now: datetime | None = None) -> list[str]:
    """Announce an event to every active endpoint subscribed to its type, in the caller's
    transaction. `key` names the occurrence (an order id, say): emitting it again for the
    same endpoint writes nothing."""
    return emit_to(session, actor, subscribed(session, actor.tenant_id, event_type),
                   event_type, key, data, now=now)


def emit_to(session: Session, actor: Actor, endpoint_ids: list[str], event_type: str,
            key: str, data: dict[str, Any], *, now: datetime | None = None) -> list[str]:
    """`emit` to the endpoints that `subscribed` answered."""
    if not endpoint_ids:
        return []
    payload = {"type": event_type, "timestamp": (now or utcnow()).isoformat(), "data": data}
    return enqueue_many(session, actor, [Draft(
        channel=OutboxChannel.webhook, purpose=Purpose.transactional, recipient=endpoint_id,
        dedup_key=f"wh:{endpoint_id}:{event_type}:{key}"[:160], payload=payload)
        for endpoint_id in endpoint_ids])
