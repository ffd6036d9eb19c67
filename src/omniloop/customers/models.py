"""Tables of the customers module.

A merged profile is never deleted: it keeps `merged_into_id` pointing at the survivor, so
events and orders keep the profile they arrived on and resolve to the survivor through it,
and an undo can restore both profiles exactly.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class IdentityKind(enum.StrEnum):
    line = "line"
    phone = "phone"
    email = "email"
    pos_card = "pos_card"
    ecommerce = "ecommerce"
    device = "device"


class Gender(enum.StrEnum):
    female = "female"
    male = "male"
    other = "other"


class Channel(enum.StrEnum):
    """Messaging channels that need the person's consent."""

    line = "line"
    email = "email"
    sms = "sms"


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "home_store_id"], ["stores.tenant_id", "stores.id"]),
        ForeignKeyConstraint(["tenant_id", "merged_into_id"],
                             ["customers.tenant_id", "customers.id"]),
        Index("ix_customers_tenant_id_merged_into_id", "tenant_id", "merged_into_id"),
        Index("ix_customers_tenant_id_name", "tenant_id", "name"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str | None] = mapped_column(String(120))
    birthday: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[Gender | None] = mapped_column(
        string_enum(Gender, 10))
    home_store_id: Mapped[str | None] = mapped_column(String(26))
    language: Mapped[str | None] = mapped_column(String(10))
    tags: Mapped[list[str]] = mapped_column(default=list)
    merged_into_id: Mapped[str | None] = mapped_column(String(26))
    erased_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerIdentity(Base):
    """One identifier of a customer. A value belongs to one customer per tenant."""

    __tablename__ = "customer_identities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "value"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_customer_identities_tenant_id_customer_id", "tenant_id", "customer_id"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[IdentityKind] = mapped_column(
        string_enum(IdentityKind, 16))
    value: Mapped[str] = mapped_column(String(254))
    source: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = created_at_column()


class CustomerMerge(Base):
    """A merge of `merged_id` into `survivor_id`, with what is needed to undo it exactly."""

    __tablename__ = "customer_merges"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "survivor_id"], ["customers.tenant_id", "customers.id"]),
        ForeignKeyConstraint(["tenant_id", "merged_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_customer_merges_tenant_id_survivor_id", "tenant_id", "survivor_id"),
        Index("ix_customer_merges_tenant_id_merged_id", "tenant_id", "merged_id"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    survivor_id: Mapped[str] = mapped_column(String(26))
    merged_id: Mapped[str] = mapped_column(String(26))
    reason: Mapped[str] = mapped_column(String(255))
    actor_label: Mapped[str] = mapped_column(String(160))
    # {"moved_identity_ids": [...], "survivor_before": {traits}, "merged_before": {traits}}
    snapshot: Mapped[dict[str, Any]] = mapped_column()
    at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column()
    undone_by: Mapped[str | None] = mapped_column(String(160))


class ConsentStatus(enum.StrEnum):
    opted_in = "opted_in"
    opted_out = "opted_out"


class CustomerConsent(Base):
    """The current consent of one customer for one channel; its history is in the events."""

    __tablename__ = "customer_consents"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
    )

    tenant_id: Mapped[str] = tenant_fk()
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    channel: Mapped[Channel] = mapped_column(
        string_enum(Channel, 10), primary_key=True)
    status: Mapped[ConsentStatus] = mapped_column(
        string_enum(ConsentStatus, 10))
    source: Mapped[str] = mapped_column(String(80))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One thing a customer did on one channel at one time. Append-only.

    `customer_id` is the profile the event arrived on and is never rewritten; readers resolve
    it to the surviving profile through `customers.merged_into_id`.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_event_id"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        # Timelines, export and erasure. No index on type: nothing reads events by type, and
        # each index costs every ingested event a random-position write (docs/benchmarks.md).
        Index("ix_events_tenant_id_customer_id_occurred_at", "tenant_id", "customer_id",
              "occurred_at"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    client_event_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    type: Mapped[str] = mapped_column(String(48))
    channel: Mapped[str] = mapped_column(String(8))  # online | offline
    source: Mapped[str] = mapped_column(String(32), default="")  # line, web, pos, email, ...
    store_id: Mapped[str | None] = mapped_column(String(26))
    campaign_id: Mapped[str | None] = mapped_column(String(26))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
