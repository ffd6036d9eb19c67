"""Messaging a customer: find their address on a channel and enqueue a message for them.
And e-mail to a staff member (`email_staff`), who is not a customer: no profile, no consent.

Modules that message people (journeys, welcome messages, OTP, campaign sends, alerts) call
these instead of building outbox rows themselves, so addresses and payloads are read one way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.models import Channel, CustomerIdentity, IdentityKind
from omniloop.customers.profiles import profile_ids, survivor_ids
from omniloop.messaging import line_messages
from omniloop.messaging.errors import MessageContentInvalid
from omniloop.messaging.models import ChannelConfig, OutboxChannel, Purpose
from omniloop.messaging.outbox import Draft, enqueue
from omniloop.tenancy.access import Actor

ADDRESS_KIND = {OutboxChannel.line: IdentityKind.line, OutboxChannel.email: IdentityKind.email,
                OutboxChannel.sms: IdentityKind.phone}
# The consent that marketing on a channel needs (customers.consent).
CONSENT_CHANNEL = {OutboxChannel.line: Channel.line, OutboxChannel.email: Channel.email,
                   OutboxChannel.sms: Channel.sms}


def address_of(session: Session, tenant_id: str, customer_id: str,
               channel: OutboxChannel) -> str | None:
    """The person's newest identity of the channel's kind, across merged profiles."""
    survivor = survivor_ids(session, tenant_id, [customer_id])[customer_id]
    ids = profile_ids(session, tenant_id, survivor)
    return session.scalar(select(CustomerIdentity.value).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.customer_id.in_(ids),
        CustomerIdentity.kind == ADDRESS_KIND[channel])
        .order_by(CustomerIdentity.created_at.desc(), CustomerIdentity.id.desc()).limit(1))


def addresses_of(session: Session, tenant_id: str, customer_ids: Iterable[str],
                 channel: OutboxChannel) -> dict[str, str]:
    """`address_of` for many plain (unmerged) customers in one query per 2,000."""
    ids = list(dict.fromkeys(customer_ids))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 2000):
        for customer_id, value in session.execute(
                select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
                    CustomerIdentity.tenant_id == tenant_id,
                    CustomerIdentity.customer_id.in_(ids[start:start + 2000]),
                    CustomerIdentity.kind == ADDRESS_KIND[channel])
                .order_by(CustomerIdentity.created_at, CustomerIdentity.id)):
            found[customer_id] = value  # the newest wins
    return found


def payload_for(channel: OutboxChannel, content: dict[str, Any]) -> dict[str, Any]:
    """A channel's payload from {text, subject, html, messages}; checked before enqueueing."""
    if channel is OutboxChannel.line:
        messages = content.get("messages") or [line_messages.text(str(content.get("text", "")))]
        return {"messages": line_messages.validate(list(messages))}
    if channel is OutboxChannel.email:
        subject = str(content.get("subject", "")).strip()
        text = str(content.get("text", "")).strip()
        if not subject or not text:
            raise MessageContentInvalid(problem="an e-mail needs a subject and a text.")
        payload = {"subject": subject[:200], "text": text}
        if content.get("html"):
            payload["html"] = str(content["html"])
        return payload
    if channel is OutboxChannel.sms:
        text = str(content.get("text", "")).strip()
        if not 1 <= len(text) <= 1000:
            raise MessageContentInvalid(problem="an SMS must be 1–1,000 characters.")
        return {"text": text}
    raise MessageContentInvalid(problem=f"cannot message a customer on {channel.value}.")


def message_customer(session: Session, actor: Actor, customer_id: str,
                     channel: OutboxChannel, purpose: Purpose, dedup_key: str,
                     content: dict[str, Any], *, send_id: str | None = None) -> str | None:
    """Enqueue one message to a customer in the caller's transaction.

    Answers the outbox id, or None when the customer has no address on the channel or the
    dedup key was used before. Consent, quiet hours and caps are checked when it is sent.
    """
    address = address_of(session, actor.tenant_id, customer_id, channel)
    if address is None:
        return None
    return enqueue(session, actor, Draft(
        channel=channel, purpose=purpose, recipient=address, dedup_key=dedup_key,
        payload=payload_for(channel, content), customer_id=customer_id, send_id=send_id))


def channel_enabled(session: Session, tenant_id: str, channel: OutboxChannel) -> bool:
    """Whether the brand has the channel set up and switched on (without reading secrets)."""
    row = session.get(ChannelConfig, (tenant_id, channel))
    return row is not None and row.enabled


def email_staff(session: Session, actor: Actor, address: str, dedup_key: str,
                content: dict[str, Any]) -> str | None:
    """Enqueue one transactional e-mail to a staff member's address, in the caller's
    transaction (an alert of the brand to its own people).

    Staff are not customers: the row names no customer, so no consent or weekly cap applies,
    and being transactional, quiet hours do not hold it. Answers the outbox id, or None when
    the dedup key was used before.
    """
    return enqueue(session, actor, Draft(
        channel=OutboxChannel.email, purpose=Purpose.transactional,
        recipient=address.strip(), dedup_key=dedup_key,
        payload=payload_for(OutboxChannel.email, content)))
