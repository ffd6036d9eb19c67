"""Sends: one message to an audience, now or at a set time, with per-recipient status.

Audiences (all read at the moment the send is released, not when it is planned):
* `channel`: everyone who consented to the channel;
* `tag`: those of them carrying a tag;
* `near_store`: those of them whose home store, or a store they bought at in the last 90
  days, lies within `km` of a store (great-circle distance between store coordinates);
* `segment`: those of them in a saved RFM segment (`analytics.segments`; its members as
  saved, merged profiles counted for their survivor).

With a campaign, the campaign's holdout is drawn and recorded through
`campaigns.claims.assign_audience` (the same draw the campaign report reads) and left out;
people drawn before keep their group. Each recipient gets one outbox row with the dedup key
`send:<send>:<customer>`, so releasing a send twice sends nothing twice. Consent, quiet
hours and the weekly cap are checked again when each message goes out.

Content is a template: `{name}`, `{claim_url}`, `{wallet_url}` and `{unsubscribe_url}`
are filled in per recipient. Recipients whose rendered content is identical share LINE
multicasts; personal links make every message its own push.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from omniloop.analytics.segments import get_segment, segment_customer_ids
from omniloop.campaigns.claims import assign_audience, wallet_path
from omniloop.campaigns.pages import claim_url
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.consent import unsubscribe_url
from omniloop.customers.models import ConsentStatus, Customer, CustomerConsent
from omniloop.customers.profiles import survivor_ids
from omniloop.messaging import line_messages
from omniloop.messaging.errors import (
    AudienceInvalid,
    ContentOrTemplate,
    MessageContentInvalid,
    MessageTemplateInvalid,
    SendNotCancellable,
    SendNotFound,
    UnknownVariable,
)
from omniloop.messaging.models import MessageSend, OutboxChannel, Purpose, SendStatus
from omniloop.messaging.outbox import Draft, enqueue_many
from omniloop.messaging.service import CONSENT_CHANNEL, addresses_of, payload_for
from omniloop.orders.models import Order
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import Store, Tenant
from omniloop.tenancy.stores import get_store

VARIABLES = ("name", "claim_url", "wallet_url", "unsubscribe_url")
_CHUNK = 2000
RECENT_VISIT_DAYS = 90


def _fields(template: str, field: str | None = None) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        raise MessageContentInvalid(problem="unbalanced { or } in the text.",
                                    field=field) from None


def allowed_variables() -> str:
    return ", ".join("{" + v + "}" for v in VARIABLES)


def check_content(channel: OutboxChannel, content: dict[str, Any], *,
                  field_prefix: str = "") -> dict[str, Any]:
    """The content's text fields as templates; refused when they name unknown variables
    (`UnknownVariable`, with `field` naming the text at fault, after `field_prefix`) or the
    rendered message would be refused by the channel. Sends, journeys and saved message
    templates all check their content here."""
    clean = {k: str(v) for k, v in content.items() if k in ("text", "subject", "html", "title")
             and v is not None and str(v).strip()}
    for key, value in clean.items():
        unknown = _fields(value, field_prefix + key) - set(VARIABLES)
        if unknown:
            raise UnknownVariable(field=field_prefix + key,
                                  variable="{" + sorted(unknown)[0] + "}",
                                  allowed=allowed_variables())
    sample = dict.fromkeys(VARIABLES, "https://example.com/x") | {"name": "王小明"}
    try:
        render(channel, clean, sample, has_campaign=True)
    except MessageContentInvalid as exc:
        if exc.field is None:
            at_fault = ("subject" if channel is OutboxChannel.email and not clean.get("subject")
                        else "text")
            exc.field = field_prefix + at_fault
        raise
    return clean


def personal_values(session: Session, tenant_id: str, customer_id: str,
                    channel: OutboxChannel, needs: set[str], *, name: str,
                    claim: str = "") -> dict[str, str]:
    """One recipient's variables (only the links the content uses are made)."""
    values = {"claim_url": claim, "name": name}
    if "wallet_url" in needs:
        values["wallet_url"] = _base_url() + wallet_path(session, tenant_id, customer_id)
    if "unsubscribe_url" in needs:
        values["unsubscribe_url"] = unsubscribe_url(tenant_id, customer_id,
                                                    CONSENT_CHANNEL[channel])
    return values


def variables_in(content: dict[str, Any]) -> set[str]:
    return set().union(*(_fields(str(v)) for v in content.values())) if content else set()


def render(channel: OutboxChannel, content: dict[str, str], values: dict[str, str], *,
           has_campaign: bool) -> dict[str, Any]:
    """One recipient's channel payload from the template."""
    filled = {k: v.format_map(values) for k, v in content.items()}
    if channel is OutboxChannel.line and has_campaign and values.get("claim_url"):
        messages = []
        if filled.get("text"):
            messages.append(line_messages.text(filled["text"]))
        messages.append(line_messages.coupon_card(
            title=filled.get("title") or filled.get("text", "")[:40] or "優惠券",
            description=filled.get("text", "")[:200], claim_url=values["claim_url"],
            wallet_url=values.get("wallet_url") or None))
        return payload_for(channel, {"messages": messages})
    return payload_for(channel, filled)


# --- audiences ----------------------------------------------------------------------------


def _haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def check_audience(session: Session, actor: Actor, audience: dict[str, Any]) -> dict[str, Any]:
    kind = audience.get("kind")
    if kind == "channel":
        return {"kind": "channel"}
    if kind == "tag":
        tag = str(audience.get("tag") or "").strip()
        if not tag:
            raise AudienceInvalid(problem="name the tag.")
        return {"kind": "tag", "tag": tag}
    if kind == "near_store":
        store = get_store(session, actor, str(audience.get("store_id") or ""))
        try:
            km = float(audience.get("km") or 0)
        except (TypeError, ValueError):
            raise AudienceInvalid(problem="the distance must be a number of km.") from None
        if not 0 < km <= 500:
            raise AudienceInvalid(problem="the distance must be between 0 and 500 km.")
        if store.latitude is None or store.longitude is None:
            raise AudienceInvalid(problem="the store has no coordinates.")
        return {"kind": "near_store", "store_id": store.id, "km": km}
    if kind == "segment":
        segment = get_segment(session, actor, str(audience.get("segment_id") or ""))
        return {"kind": "segment", "segment_id": segment.id}
    raise AudienceInvalid(problem="the kind is channel, tag, near_store or segment.")


def audience_members(session: Session, actor: Actor, channel: OutboxChannel,
                     audience: dict[str, Any], *, now: datetime | None = None) -> list[str]:
    """Customer ids (unmerged, not erased, consenting to the channel) in the audience."""
    actor.require(Permission.customers_read)
    consent_channel = CONSENT_CHANNEL.get(channel)
    if consent_channel is None:
        raise AudienceInvalid(problem="sends go out on LINE, e-mail or SMS.")
    audience = check_audience(session, actor, audience)
    consenting = (
        select(Customer.id)
        .join(CustomerConsent, (CustomerConsent.tenant_id == Customer.tenant_id)
              & (CustomerConsent.customer_id == Customer.id))
        .where(Customer.tenant_id == actor.tenant_id, Customer.merged_into_id.is_(None),
               Customer.erased_at.is_(None), CustomerConsent.channel == consent_channel,
               CustomerConsent.status == ConsentStatus.opted_in)
        .order_by(Customer.id))
    if audience["kind"] == "channel":
        return list(session.scalars(consenting))
    if audience["kind"] == "segment":
        members = segment_customer_ids(session, actor, audience["segment_id"])
        wanted = set(survivor_ids(session, actor.tenant_id, members).values())
        return [customer_id for customer_id in session.scalars(consenting)
                if customer_id in wanted]
    if audience["kind"] == "tag":
        # Tags are a JSON list: read and filtered here, the same on SQLite and PostgreSQL.
        return [r.id for r in session.execute(consenting.add_columns(Customer.tags))
                if audience["tag"] in (r.tags or [])]
    rows = session.execute(consenting.add_columns(Customer.home_store_id)).all()
    origin = session.get_one(Store, (actor.tenant_id, audience["store_id"]))
    assert origin.latitude is not None
    assert origin.longitude is not None
    near = {s.id for s in session.scalars(select(Store).where(
        Store.tenant_id == actor.tenant_id, Store.latitude.is_not(None),
        Store.longitude.is_not(None)))
        if _haversine_km((origin.latitude, origin.longitude),
                         (float(s.latitude or 0), float(s.longitude or 0))) <= audience["km"]}
    since = (now or utcnow()) - timedelta(days=RECENT_VISIT_DAYS)
    visitors = set(session.scalars(select(Order.customer_id).where(
        Order.tenant_id == actor.tenant_id, Order.store_id.in_(near), Order.paid_at >= since,
        Order.customer_id.is_not(None)).distinct()))
    return [r.id for r in rows if r.home_store_id in near or r.id in visitors]


# --- sends --------------------------------------------------------------------------------


def create_send(session: Session, actor: Actor, *, name: str, channel: OutboxChannel | None,
                audience: dict[str, Any], content: dict[str, Any] | None = None,
                template_id: str | None = None, campaign_id: str | None = None,
                scheduled_at: datetime | None = None,
                now: datetime | None = None) -> MessageSend:
    """Plan a send; released at once unless `scheduled_at` is in the future.

    The content is given, or copied from a saved message template (`template_id`; the
    channel defaults to the template's): the send keeps its own copy, so changing the
    template later changes no send."""
    actor.require(Permission.campaigns_manage)
    now = now or utcnow()
    if (content is None) == (template_id is None):
        raise ContentOrTemplate(field="template_id")
    if template_id is not None:
        from omniloop.messaging.templates import content_of, get_template

        template = get_template(session, actor, template_id)
        if channel is not None and channel is not template.channel:
            raise MessageTemplateInvalid(field="channel",
                                         problem=N_("the template is for another channel."))
        channel = template.channel
        content = content_of(template)
    assert content is not None
    if channel is None:
        raise AudienceInvalid(problem="sends go out on LINE, e-mail or SMS.")
    name = name.strip()
    if not 1 <= len(name) <= 120:
        raise MessageContentInvalid(problem="the name must be 1–120 characters.")
    if channel not in CONSENT_CHANNEL:
        raise AudienceInvalid(problem="sends go out on LINE, e-mail or SMS.")
    if campaign_id:
        get_campaign(session, actor, campaign_id)
    send = MessageSend(tenant_id=actor.tenant_id, name=name, channel=channel,
                       campaign_id=campaign_id or None,
                       audience=check_audience(session, actor, audience),
                       content=check_content(channel, content), status=SendStatus.scheduled,
                       scheduled_at=scheduled_at or now, created_by=actor.label,
                       audience_count=0, holdout_count=0, enqueued_count=0, created_at=now)
    session.add(send)
    session.flush()
    audit.record(session, actor, "message_send.create", "message_send", send.id,
                 {"name": name, "channel": channel.value, "audience": send.audience,
                  "campaign_id": campaign_id, "scheduled_at": send.scheduled_at})
    if as_utc(send.scheduled_at) <= now:
        release(session, actor, send, now=now)
    return send


def get_send(session: Session, actor: Actor, send_id: str) -> MessageSend:
    actor.require(Permission.campaigns_read)
    send = session.get(MessageSend, (actor.tenant_id, send_id))
    if send is None:
        raise SendNotFound()
    return send


def list_sends(session: Session, actor: Actor, limit: int = 100) -> list[MessageSend]:
    actor.require(Permission.campaigns_read)
    return list(session.scalars(select(MessageSend).where(
        MessageSend.tenant_id == actor.tenant_id)
        .order_by(MessageSend.created_at.desc(), MessageSend.id.desc()).limit(limit)))


def cancel_send(session: Session, actor: Actor, send_id: str) -> MessageSend:
    actor.require(Permission.campaigns_manage)
    send = get_send(session, actor, send_id)
    if send.status is not SendStatus.scheduled:
        raise SendNotCancellable(status=send.status.value)
    send.status = SendStatus.cancelled
    audit.record(session, actor, "message_send.cancel", "message_send", send.id, {})
    return send


def release(session: Session, actor: Actor, send: MessageSend, *,
            now: datetime | None = None) -> int:
    """Read the audience, draw the holdout, enqueue one message per target."""
    now = now or utcnow()
    channel = send.channel
    members = audience_members(session, actor, channel, send.audience, now=now)
    targets = members
    if send.campaign_id:
        split = assign_audience(session, actor, send.campaign_id, members, now=now)
        targets = split.targets
        send.holdout_count = len(split.holdout)
    addresses = addresses_of(session, actor.tenant_id, targets, channel)
    tenant = session.get_one(Tenant, actor.tenant_id)
    claim = claim_url(tenant.slug, send.campaign_id) if send.campaign_id else ""
    needs = variables_in(send.content)
    shared: dict[str, Any] | None = None
    if not needs & {"name", "wallet_url", "unsubscribe_url"}:
        shared = render(channel, send.content, {"claim_url": claim},
                        has_campaign=bool(send.campaign_id))
    names = _names(session, actor.tenant_id, targets) if "name" in needs else {}
    drafts = []
    for customer_id in targets:
        address = addresses.get(customer_id)
        if address is None:
            continue
        payload = shared
        if payload is None:
            values = personal_values(session, actor.tenant_id, customer_id, channel, needs,
                                     name=names.get(customer_id) or "", claim=claim)
            payload = render(channel, send.content, values,
                             has_campaign=bool(send.campaign_id))
        drafts.append(Draft(channel=channel, purpose=Purpose.marketing, recipient=address,
                            dedup_key=f"send:{send.id}:{customer_id}", payload=payload,
                            customer_id=customer_id, send_id=send.id))
    written = enqueue_many(session, actor, drafts)
    send.audience_count = len(members)
    send.enqueued_count += len(written)
    send.status = SendStatus.enqueued
    send.enqueued_at = now
    return len(written)


def _names(session: Session, tenant_id: str, ids: Iterable[str]) -> dict[str, str]:
    wanted = list(ids)
    names: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        for customer_id, name in session.execute(select(Customer.id, Customer.name).where(
                Customer.tenant_id == tenant_id, Customer.id.in_(wanted[start:start + _CHUNK]))):
            names[customer_id] = name or ""
    return names


def _base_url() -> str:
    from omniloop.core.settings import get_settings

    return get_settings().base_url.rstrip("/")


def release_due(session: Session, now: datetime | None = None) -> int:
    """Release every brand's scheduled sends whose time has come (the worker calls this)."""
    from omniloop.tenancy.access import system_actor

    now = now or utcnow()
    released = 0
    for send in session.scalars(select(MessageSend).where(
            MessageSend.status == SendStatus.scheduled, MessageSend.scheduled_at <= now)
            .order_by(MessageSend.scheduled_at)):
        release(session, system_actor(send.tenant_id, "scheduled send"), send, now=now)
        released += 1
    return released
