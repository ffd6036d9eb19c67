"""Consent to marketing messages, per channel (LINE, e-mail, SMS), and unsubscribe links.

The rule every sender follows: **call `may_message` before sending a marketing message**, and
send only when it answers True. It answers True only after an explicit opt-in that has not
been withdrawn since. A customer with no consent row for a channel is *not* messaged: Taiwan's
Personal Data Protection Act asks for consent before personal data is used for marketing
beyond the original purpose, and an opt-in default is the safe reading of it (and of GDPR
art. 6/7). See docs/privacy.md.

The current state is one row per (customer, channel) in `customer_consents`; every change
also records a `consent_changed` event (channel, status, source), and those events are the
history. A merged person's consent is read across the survivor and every profile merged into
it; when several profiles have a row for one channel, the most recent change wins (an opt-out
wins a tie).

Unsubscribe links (`/u/<token>`) carry an HMAC-SHA256 signature over (tenant, customer,
channel) keyed by the instance's secret key, so they cannot be guessed or altered; rotating
the secret key invalidates links already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import Conflict
from omniloop.core.ids import new_id
from omniloop.core.settings import get_settings
from omniloop.customers.errors import CustomerErased
from omniloop.customers.event_types import EVENT_TYPES
from omniloop.customers.events import record_event
from omniloop.customers.models import Channel, ConsentStatus, Customer, CustomerConsent
from omniloop.customers.profiles import get_customer, profile_ids, survivor_ids
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission, system_actor

CONSENT_EVENT = "consent_changed"
UNSUBSCRIBE_SOURCE = "unsubscribe_link"
_SALT = b"unsubscribe"
# One letter per channel keeps links short: an SMS in Chinese holds only 70 characters.
_CHANNEL_CODES: dict[Channel, str] = {Channel.line: "l", Channel.email: "e", Channel.sms: "s"}
_CODE_CHANNELS = {code: channel for channel, code in _CHANNEL_CODES.items()}
_SIGNATURE_BYTES = 16  # 128 bits of HMAC-SHA256: not guessable, and the link stays short


def set_consent(session: Session, actor: Actor, customer_id: str, channel: Channel,
                status: ConsentStatus, source: str) -> CustomerConsent:
    """Record that the customer opted in or out of `channel`, and where (`source`).

    The row goes on the surviving profile. When the customer's current state already is
    `status`, nothing is written (a repeated unsubscribe changes nothing) and the current row
    is returned. Otherwise the row is upserted, a `consent_changed` event records the change
    and the audit log notes who made it. An erased customer answers `CustomerErased`.
    """
    actor.require(Permission.customers_write)
    customer = get_customer(session, actor, customer_id)
    if customer.erased_at is not None:
        raise CustomerErased()
    current = consents_of(session, actor.tenant_id, customer.id).get(channel)
    if current is not None and current.status == status:
        return current
    previous = current.status.value if current is not None else None
    now = utcnow()
    row = _upsert(session, actor.tenant_id, customer.id, channel, status, source, now)
    properties: dict[str, str | None] = {
        "channel": channel.value, "status": status.value, "source": source,
        "previous": previous}
    # The customer id is on the event itself; the client event id only has to be unique per
    # change (and fit its 64 characters).
    record_event(session, actor, client_event_id=f"consent:{channel.value}:{new_id()}",
                 type=CONSENT_EVENT, channel=EVENT_TYPES[CONSENT_EVENT].channel,
                 customer_id=customer.id, occurred_at=now, source=source[:32],
                 properties=properties)
    audit.record(session, actor, "customer.consent", "customer", customer.id,
                 {"channel": channel.value, "status": status.value, "source": source})
    return row


def _upsert(session: Session, tenant_id: str, customer_id: str, channel: Channel,
            status: ConsentStatus, source: str, now: datetime) -> CustomerConsent:
    """Update the row, or insert it; a concurrent insert of the same row turns into an update.

    A conditional UPDATE then INSERT in a savepoint is correct on SQLite and PostgreSQL alike.
    """
    key = (CustomerConsent.tenant_id == tenant_id, CustomerConsent.customer_id == customer_id,
           CustomerConsent.channel == channel)
    values = {"status": status, "source": source, "changed_at": now}
    for _ in range(2):
        result = session.execute(update(CustomerConsent).where(*key).values(**values)
                                 .execution_options(synchronize_session=False))
        if result.rowcount:  # type: ignore[attr-defined]
            break
        try:
            with session.begin_nested():
                session.add(CustomerConsent(tenant_id=tenant_id, customer_id=customer_id,
                                            channel=channel, **values))
                session.flush()
            break
        except IntegrityError:
            continue  # inserted by a concurrent request meanwhile: update it instead
    else:
        raise Conflict()
    return session.get_one(CustomerConsent, (tenant_id, customer_id, channel),
                           populate_existing=True)


def consents_of(session: Session, tenant_id: str,
                customer_id: str) -> dict[Channel, CustomerConsent]:
    """The current consent per channel of the person behind `customer_id`.

    Reads the survivor and every profile merged into it; for a channel with rows on several
    profiles, the most recent change wins, and an opt-out wins a tie. Channels without any
    row are absent: for those, the customer has not consented.
    """
    survivor = survivor_ids(session, tenant_id, [customer_id])[customer_id]
    ids = profile_ids(session, tenant_id, survivor)
    best: dict[Channel, CustomerConsent] = {}
    for row in session.scalars(select(CustomerConsent).where(
            CustomerConsent.tenant_id == tenant_id, CustomerConsent.customer_id.in_(ids))):
        held = best.get(row.channel)
        if held is None or _rank(row) > _rank(held):
            best[row.channel] = row
    return best


def _rank(row: CustomerConsent) -> tuple[datetime, bool]:
    return as_utc(row.changed_at), row.status is ConsentStatus.opted_out


def may_message(session: Session, tenant_id: str, customer_id: str, channel: Channel) -> bool:
    """Whether a marketing message may be sent to this customer on `channel`.

    The one check every sender (campaigns, journeys, LINE, e-mail, SMS) makes before sending.
    True only when the person's current consent for the channel is an opt-in. No consent
    recorded means **no**: marketing is opt-in (Taiwan PDPA; GDPR). An erased customer, or
    an id that is not this tenant's, is never messaged.
    """
    survivor = survivor_ids(session, tenant_id, [customer_id])[customer_id]
    customer = session.get(Customer, (tenant_id, survivor))
    if customer is None or customer.erased_at is not None:
        return False
    consent = consents_of(session, tenant_id, survivor).get(channel)
    return consent is not None and consent.status is ConsentStatus.opted_in


# --- unsubscribe links -------------------------------------------------------------------


@dataclass(frozen=True)
class UnsubscribeTarget:
    tenant_id: str
    customer_id: str
    channel: Channel


def _signature(payload: str) -> str:
    secret = get_settings().resolved_secret_key().encode()
    key = hmac.new(secret, _SALT, hashlib.sha256).digest()  # a key used for nothing else
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsubscribe_token(tenant_id: str, customer_id: str, channel: Channel) -> str:
    """`<tenant>.<customer>.<channel letter>.<signature>`: ids are opaque, never personal."""
    payload = f"{tenant_id}.{customer_id}.{_CHANNEL_CODES[channel]}"
    return f"{payload}.{_signature(payload)}"


def read_unsubscribe_token(token: str) -> UnsubscribeTarget | None:
    """What a token points at, or None when it is malformed, forged or altered."""
    parts = token.split(".")
    if len(parts) != 4 or parts[2] not in _CODE_CHANNELS or len(token) > 200:
        return None
    payload, signature = ".".join(parts[:3]), parts[3]
    if not hmac.compare_digest(_signature(payload).encode(), signature.encode()):
        return None
    return UnsubscribeTarget(tenant_id=parts[0], customer_id=parts[1],
                             channel=_CODE_CHANNELS[parts[2]])


def unsubscribe_url(tenant_id: str, customer_id: str, channel: Channel) -> str:
    """The absolute link to put in a message, under the instance's `base_url`."""
    base = get_settings().base_url.rstrip("/")
    return f"{base}/u/{unsubscribe_token(tenant_id, customer_id, channel)}"


def list_unsubscribe_headers(tenant_id: str, customer_id: str) -> dict[str, str]:
    """The e-mail headers for one-click unsubscribe (RFC 2369 and RFC 8058)."""
    url = unsubscribe_url(tenant_id, customer_id, Channel.email)
    return {"List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe(session: Session, target: UnsubscribeTarget) -> Customer:
    """Opt the customer of a valid link out of its channel. Idempotent.

    An unknown customer answers `CustomerNotFound`. An erased customer has no consent left to
    withdraw (erasure removed it), so nothing is written.
    """
    actor = system_actor(target.tenant_id, label="unsubscribe link")
    customer = get_customer(session, actor, target.customer_id)
    if customer.erased_at is None:
        set_consent(session, actor, customer.id, target.channel, ConsentStatus.opted_out,
                    UNSUBSCRIBE_SOURCE)
    return customer
