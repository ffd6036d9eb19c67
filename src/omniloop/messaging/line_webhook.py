"""The LINE webhook: `/webhooks/line/<brand>`, verified, each event acted on once.

* The body must carry a valid `X-Line-Signature` (HMAC-SHA256 with the channel secret,
  checked by line-bot-sdk); otherwise 401 and nothing is read or written.
* LINE redelivers events (`deliveryContext.isRedelivery`); every event's
  `webhookEventId` is recorded in the same transaction as what it caused, so a second
  delivery finds it and does nothing.
* follow: the LINE user becomes (or is found as) a customer with a LINE identity, their LINE
  consent is switched on, a `line_follow` event is recorded and a welcome message goes out
  (with a coupon from the welcome campaign when one is set and still running).
* unfollow: LINE consent off, `line_unfollow` recorded.
* a text "我的優惠券" / "my coupons" (or the postback `action=wallet`): the wallet link.
* postback `action=claim&campaign=<id>`: claim that campaign's coupon, answer with the card.

Answers go through the outbox as replies (free on LINE) that fall back to a push.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from omniloop.campaigns.claims import claim_coupon, wallet_path
from omniloop.campaigns.schemas import ClaimIn
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import OmniloopError
from omniloop.core.settings import get_settings
from omniloop.customers.consent import set_consent
from omniloop.customers.events import record_event
from omniloop.customers.identify import identify
from omniloop.customers.models import Channel, ConsentStatus, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.messaging import channels, journeys, line_messages, webhooks
from omniloop.messaging.errors import InvalidLineSignature, InvalidWebhookBody
from omniloop.messaging.models import LineWebhookEvent, OutboxChannel, Purpose
from omniloop.messaging.outbox import Draft, enqueue
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.tenants import get_tenant_by_slug

log = logging.getLogger("omniloop.messaging")

WALLET_KEYWORDS = frozenset({"我的優惠券", "優惠券", "my coupons", "coupons", "wallet"})
DEFAULT_WELCOME = "歡迎加入！輸入「我的優惠券」隨時查看您的優惠券。"
_EVENTS = cast(Table, LineWebhookEvent.__table__)


@dataclass(frozen=True)
class WebhookResult:
    received: int
    processed: int
    duplicates: int


def handle(session: Session, tenant_slug: str, body: bytes, signature: str | None,
           *, now: datetime | None = None) -> WebhookResult:
    """Verify and act on one webhook delivery, in the caller's transaction."""
    from linebot.v3.webhook import SignatureValidator

    tenant = get_tenant_by_slug(session, tenant_slug)
    channel = channels.load_channel(session, tenant.id, OutboxChannel.line)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidWebhookBody() from None
    validator = SignatureValidator(str(channel.secrets["channel_secret"]))
    if not signature or not validator.validate(text, signature):
        raise InvalidLineSignature()
    try:
        payload = json.loads(text)
        events = payload["events"]
        if not isinstance(events, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidWebhookBody() from None
    actor = system_actor(tenant.id, label="LINE webhook")
    processed = duplicates = 0
    for event in events:
        if not isinstance(event, dict):
            raise InvalidWebhookBody()
        event_id = event.get("webhookEventId")
        kind = str(event.get("type", ""))
        if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
            raise InvalidWebhookBody()
        if not _first_delivery(session, tenant.id, event_id, kind[:32], now or utcnow()):
            duplicates += 1
            continue
        try:
            # One savepoint per event: a refusal undoes that event's changes, not the
            # record that it arrived (so LINE's redelivery is not acted on either).
            with session.begin_nested():
                _act(session, actor, event_id, kind, event, now or utcnow())
        except OmniloopError as exc:
            # An id our rules refuse (an erased customer, say): LINE must still get its
            # 200, or it redelivers the event for days.
            log.warning("LINE %s event %s not acted on: %s", kind, event_id, exc)
        processed += 1
    return WebhookResult(received=len(events), processed=processed, duplicates=duplicates)


def _first_delivery(session: Session, tenant_id: str, event_id: str, kind: str,
                    now: datetime) -> bool:
    """Record the event id; False when it was recorded before (a redelivery)."""
    dialect = session.get_bind().dialect.name
    values = {"tenant_id": tenant_id, "webhook_event_id": event_id, "type": kind,
              "received_at": now}
    module: Any = postgresql if dialect == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT that SQLAlchemy sends
    # with RETURNING of the key, whether or not it inserted.
    statement = module.insert(_EVENTS).values(**values).on_conflict_do_nothing(
        index_elements=["tenant_id", "webhook_event_id"]).returning(_EVENTS.c.webhook_event_id)
    return session.execute(statement).first() is not None


def _user_id(event: dict[str, Any]) -> str | None:
    source = event.get("source")
    if isinstance(source, dict) and source.get("type") == "user":
        user = source.get("userId")
        return user if isinstance(user, str) else None
    return None


def _customer(session: Session, actor: Actor, user_id: str) -> str:
    return identify(session, actor, [IdentityIn(kind=IdentityKind.line, value=user_id)],
                    source="line").customer.id


def _wallet_url(session: Session, tenant_id: str, customer_id: str) -> str:
    base = get_settings().base_url.rstrip("/")
    return base + wallet_path(session, tenant_id, customer_id)


def _answer(session: Session, actor: Actor, event_id: str, user_id: str, customer_id: str,
            event: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    payload: dict[str, Any] = {"messages": line_messages.validate(messages)}
    if isinstance(event.get("replyToken"), str):
        payload["reply_token"] = event["replyToken"]
    enqueue(session, actor, Draft(
        channel=OutboxChannel.line, purpose=Purpose.transactional, recipient=user_id,
        dedup_key=f"line:answer:{event_id}", payload=payload, customer_id=customer_id))


def _act(session: Session, actor: Actor, event_id: str, kind: str, event: dict[str, Any],
         now: datetime) -> None:
    user_id = _user_id(event)
    if user_id is None:
        return  # group and room events: nothing to do for a brand's customer base
    if kind == "follow":
        _follow(session, actor, event_id, user_id, event, now)
    elif kind == "unfollow":
        _unfollow(session, actor, event_id, user_id, now)
    elif kind == "message":
        message = event.get("message") or {}
        if message.get("type") == "text" and \
                str(message.get("text", "")).strip().lower() in WALLET_KEYWORDS:
            customer_id = _customer(session, actor, user_id)
            _send_wallet(session, actor, event_id, user_id, customer_id, event)
    elif kind == "postback":
        _postback(session, actor, event_id, user_id, event)


def _follow(session: Session, actor: Actor, event_id: str, user_id: str,
            event: dict[str, Any], now: datetime) -> None:
    customer_id = _customer(session, actor, user_id)
    set_consent(session, actor, customer_id, Channel.line, ConsentStatus.opted_in,
                "line_follow")
    record_event(session, actor, client_event_id=f"line:{event_id}"[:64], type="line_follow",
                 channel="online", customer_id=customer_id, occurred_at=now, source="line")
    webhooks.emit(session, actor, "line.followed", event_id,
                  {"customer_id": customer_id, "line_user_id": user_id})
    journeys.enter(session, actor.tenant_id, "line_follow", customer_id, f"line:{event_id}",
                   now=now)
    rules = channels.rules_of(session, actor.tenant_id)
    messages: list[dict[str, Any]] = [line_messages.text(rules.welcome_text or DEFAULT_WELCOME)]
    if rules.welcome_campaign_id:
        card = _claim_card(session, actor, rules.welcome_campaign_id, user_id, customer_id)
        if card is not None:
            messages.append(card)
    _answer(session, actor, event_id, user_id, customer_id, event, messages)


def _unfollow(session: Session, actor: Actor, event_id: str, user_id: str,
              now: datetime) -> None:
    customer_id = _customer(session, actor, user_id)
    set_consent(session, actor, customer_id, Channel.line, ConsentStatus.opted_out,
                "line_unfollow")
    record_event(session, actor, client_event_id=f"line:{event_id}"[:64],
                 type="line_unfollow", channel="online", customer_id=customer_id,
                 occurred_at=now, source="line")
    webhooks.emit(session, actor, "line.unfollowed", event_id,
                  {"customer_id": customer_id, "line_user_id": user_id})


def _send_wallet(session: Session, actor: Actor, event_id: str, user_id: str,
                 customer_id: str, event: dict[str, Any]) -> None:
    url = _wallet_url(session, actor.tenant_id, customer_id)
    _answer(session, actor, event_id, user_id, customer_id, event, [line_messages.coupon_card(
        title="我的優惠券", description="點下方按鈕查看您的所有優惠券。", wallet_url=url)])


def _claim_card(session: Session, actor: Actor, campaign_id: str, user_id: str,
                customer_id: str) -> dict[str, Any] | None:
    """Claim the campaign's coupon for the user (in a savepoint: a refusal, such as an
    exhausted or ended campaign, undoes only the claim) and build its card."""
    try:
        with session.begin_nested():
            result = claim_coupon(session, actor, campaign_id, ClaimIn(
                identities=[IdentityIn(kind=IdentityKind.line, value=user_id)],
                channel="line"))
    except OmniloopError as exc:
        log.info("LINE: no coupon of campaign %s for %s: %s", campaign_id, user_id, exc.code)
        return None
    url = _wallet_url(session, actor.tenant_id, customer_id)
    campaign_name = getattr(result.coupon, "code", "")
    return line_messages.coupon_card(title="您的優惠券已放入錢包",
                                     description=f"券號 {campaign_name}", wallet_url=url)


def _postback(session: Session, actor: Actor, event_id: str, user_id: str,
              event: dict[str, Any]) -> None:
    postback = event.get("postback") or {}
    data = parse_qs(str(postback.get("data", "")))
    action = (data.get("action") or [""])[0]
    customer_id = _customer(session, actor, user_id)
    if action == "wallet":
        _send_wallet(session, actor, event_id, user_id, customer_id, event)
    elif action == "claim":
        campaign_id = (data.get("campaign") or [""])[0]
        card = _claim_card(session, actor, campaign_id, user_id, customer_id) \
            if campaign_id else None
        messages = [card] if card is not None else [
            line_messages.text("很抱歉，這張優惠券已經領完或活動已結束。")]
        _answer(session, actor, event_id, user_id, customer_id, event, messages)
