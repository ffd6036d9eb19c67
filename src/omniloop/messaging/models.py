"""Tables of the messaging module: the outbox, channel settings, webhook subscriptions,
processed LINE webhook events, phone verifications and campaign sends.

The outbox is the heart of it. A message is a row written in the same transaction as the
change that causes it; the worker claims due rows, sends them and records the outcome. A
row's `dedup_key` is unique per tenant, so enqueueing the same purpose for the same
recipient twice writes one row; its `id` (or, for LINE multicasts, its `batch_id`) is what
the receiving side sees as the retry/idempotency key, so a re-send after a crash is
recognised there and delivered once.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class JsonText(TypeDecorator[Any]):
    """JSON kept as text, so the outbox can write a payload it serialised once for thousands
    of rows (a campaign card) without serialising it again per row: a `str` is taken as
    JSON already, anything else is serialised. Nothing queries inside a payload."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return json.loads(value) if value is not None else None


class OutboxChannel(enum.StrEnum):
    line = "line"
    email = "email"
    sms = "sms"
    webhook = "webhook"


class Purpose(enum.StrEnum):
    """Marketing messages need consent and respect quiet hours and the weekly cap;
    transactional ones (OTP codes, replies the person asked for, receipts) do not."""

    marketing = "marketing"
    transactional = "transactional"


class OutboxStatus(enum.StrEnum):
    pending = "pending"      # waiting for its next_attempt_at
    sending = "sending"      # claimed by a worker until lease_until
    sent = "sent"
    skipped = "skipped"      # not sent on purpose: no consent, frequency cap, no address
    dead = "dead"            # every try failed, or the receiver refused it for good


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dedup_key"),
        ForeignKeyConstraint(["tenant_id", "send_id"],
                             ["message_sends.tenant_id", "message_sends.id"]),
        # The worker's claim: due rows of every tenant by status and time.
        Index("ix_outbox_messages_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_messages_tenant_id_batch_id", "tenant_id", "batch_id"),
        # The weekly frequency cap and a customer's message history.
        Index("ix_outbox_messages_tenant_id_customer_id_sent_at", "tenant_id", "customer_id",
              "sent_at"),
        Index("ix_outbox_messages_tenant_id_send_id_status", "tenant_id", "send_id", "status"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    channel: Mapped[OutboxChannel] = mapped_column(string_enum(OutboxChannel, 8))
    purpose: Mapped[Purpose] = mapped_column(string_enum(Purpose, 16))
    # Not a foreign key: erasure and merges must never be blocked by message history.
    customer_id: Mapped[str | None] = mapped_column(String(26))
    # LINE user id, e-mail address, E.164 phone, or webhook endpoint id.
    recipient: Mapped[str] = mapped_column(String(254))
    dedup_key: Mapped[str] = mapped_column(String(160))
    # Same content, same group: LINE rows of one group go out as one multicast.
    group_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonText)
    status: Mapped[OutboxStatus] = mapped_column(string_enum(OutboxStatus, 8),
                                                 default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    lease_id: Mapped[str | None] = mapped_column(String(26))
    # The multicast request this row went out in; kept across retries so the retry key
    # (derived from it) stays the same.
    batch_id: Mapped[str | None] = mapped_column(String(26))
    send_id: Mapped[str | None] = mapped_column(String(26))
    reason: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    # E-mail tracking (`messaging.tracking`): the first open and click, and every click.
    opened_at: Mapped[datetime | None] = mapped_column()
    clicked_at: Mapped[datetime | None] = mapped_column()
    clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class MessagingSettings(Base):
    """A brand's rules for sending: quiet hours (local time), the weekly cap, LINE replies."""

    __tablename__ = "messaging_settings"

    tenant_id: Mapped[str] = tenant_fk()
    quiet_start: Mapped[str] = mapped_column(String(5), default="21:00")
    quiet_end: Mapped[str] = mapped_column(String(5), default="09:00")
    weekly_cap: Mapped[int] = mapped_column(Integer, default=3)
    welcome_text: Mapped[str] = mapped_column(String(1000), default="")
    welcome_campaign_id: Mapped[str | None] = mapped_column(String(26))
    otp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChannelConfig(Base):
    """One channel's connection for a brand. `secrets` is encrypted with the instance's
    secret key (messaging/crypto.py); `settings` holds what is not secret."""

    __tablename__ = "messaging_channels"

    tenant_id: Mapped[str] = tenant_fk()
    channel: Mapped[OutboxChannel] = mapped_column(string_enum(OutboxChannel, 8),
                                                   primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secrets: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookEndpoint(Base):
    """An integrator's subscription: events of these types are POSTed to `url`, signed."""

    __tablename__ = "webhook_endpoints"

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    url: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column()
    secret: Mapped[str] = mapped_column(Text)  # encrypted whsec_… secret
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = created_at_column()


class LineWebhookEvent(Base):
    """A LINE webhook event already processed: LINE redelivers, we act once."""

    __tablename__ = "line_webhook_events"

    tenant_id: Mapped[str] = tenant_fk()
    webhook_event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class PhoneVerification(Base):
    """A one-time code sent by SMS. Only its HMAC is stored."""

    __tablename__ = "phone_verifications"
    __table_args__ = (
        Index("ix_phone_verifications_tenant_id_phone", "tenant_id", "phone"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()


class SendStatus(enum.StrEnum):
    scheduled = "scheduled"
    enqueued = "enqueued"
    cancelled = "cancelled"


class MessageSend(Base):
    """A message sent to an audience (optionally for a campaign, with its holdout)."""

    __tablename__ = "message_sends"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        Index("ix_message_sends_tenant_id_status_scheduled_at", "tenant_id", "status",
              "scheduled_at"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    channel: Mapped[OutboxChannel] = mapped_column(string_enum(OutboxChannel, 8))
    campaign_id: Mapped[str | None] = mapped_column(String(26))
    # {"kind": "channel" | "tag" | "near_store", "tag": ..., "store_id": ..., "km": ...}
    audience: Mapped[dict[str, Any]] = mapped_column()
    # {"text": ..., "subject": ..., "html": ...} with {name}, {claim_url}, {wallet_url}
    content: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[SendStatus] = mapped_column(string_enum(SendStatus, 10),
                                               default=SendStatus.scheduled)
    scheduled_at: Mapped[datetime] = mapped_column(default=utcnow)
    audience_count: Mapped[int] = mapped_column(Integer, default=0)
    holdout_count: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    enqueued_at: Mapped[datetime | None] = mapped_column()


class Journey(Base):
    """An automated journey: a trigger, an optional wait and condition, then actions.

    `condition`: {} (everyone), {"consent": "line"}, {"tag": "vip"}.
    `actions`: a list of {"kind": "message", "channel": "line", "text": …} |
    {"kind": "coupon", "campaign_id": …} | {"kind": "points", "points": 50}.
    """

    __tablename__ = "journeys"

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    trigger: Mapped[str] = mapped_column(String(40))
    wait_minutes: Mapped[int] = mapped_column(Integer, default=0)
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()


class JourneyRunStatus(enum.StrEnum):
    waiting = "waiting"
    done = "done"
    skipped = "skipped"      # the condition did not hold
    failed = "failed"        # an action was refused (logged per step)


class JourneyRun(Base):
    """One customer's pass through a journey for one trigger occurrence (at most one)."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "journey_id", "occurrence"),
        ForeignKeyConstraint(["tenant_id", "journey_id"], ["journeys.tenant_id", "journeys.id"]),
        Index("ix_journey_runs_status_due_at", "status", "due_at"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    journey_id: Mapped[str] = mapped_column(String(26))
    customer_id: Mapped[str] = mapped_column(String(26))
    occurrence: Mapped[str] = mapped_column(String(100))
    status: Mapped[JourneyRunStatus] = mapped_column(string_enum(JourneyRunStatus, 8),
                                                     default=JourneyRunStatus.waiting)
    due_at: Mapped[datetime] = mapped_column()
    # Every step: [{"step": "enter" | "condition" | "action:<kind>", "at": …, "outcome": …}]
    log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class StaffTaskStatus(enum.StrEnum):
    open = "open"
    done = "done"


class StaffTask(Base):
    """Something a journey asks the staff to do for one customer (call them, welcome them
    back), listed under *Messaging → Tasks* for the customer's home store until marked done.
    One per journey run and action."""

    __tablename__ = "staff_tasks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "run_id", "action_index"),
        ForeignKeyConstraint(["tenant_id", "run_id"], ["journey_runs.tenant_id",
                                                       "journey_runs.id"]),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_staff_tasks_tenant_id_status_created_at", "tenant_id", "status",
              "created_at"),
        Index("ix_staff_tasks_tenant_id_customer_id_status", "tenant_id", "customer_id",
              "status"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    run_id: Mapped[str] = mapped_column(String(26))
    action_index: Mapped[int] = mapped_column(Integer)
    journey_id: Mapped[str] = mapped_column(String(26))
    # Not a foreign key, as in the outbox: erasure and merges are never blocked by tasks.
    customer_id: Mapped[str] = mapped_column(String(26))
    store_id: Mapped[str | None] = mapped_column(String(26))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[StaffTaskStatus] = mapped_column(string_enum(StaffTaskStatus, 8),
                                                    default=StaffTaskStatus.open)
    created_at: Mapped[datetime] = created_at_column()
    done_at: Mapped[datetime | None] = mapped_column()
    done_by: Mapped[str | None] = mapped_column(String(160))


class MessageTemplate(Base):
    """Saved content a marketer starts a send or a journey message from.

    Text fields may hold the send variables (`sends.VARIABLES`); they are checked like a
    send's content when saved. A send or a journey **copies** the content when it is made, so
    editing or deleting a template never changes what was, or is about to be, sent.
    """

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    channel: Mapped[OutboxChannel] = mapped_column(string_enum(OutboxChannel, 8))
    text: Mapped[str] = mapped_column(Text)
    # E-mail only: the subject and an optional HTML part.
    subject: Mapped[str | None] = mapped_column(String(200))
    html: Mapped[str | None] = mapped_column(Text)
    # LINE only: the coupon card's title when the send has a campaign.
    title: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()
    created_by: Mapped[str] = mapped_column(String(160), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(160), default="")
