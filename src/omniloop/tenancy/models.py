"""Tables of the tenancy module. Every table but `tenants` keys on (tenant_id, id)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum


class Role(enum.StrEnum):
    owner = "owner"
    marketer = "marketer"
    store_manager = "store_manager"
    cashier = "cashier"


class ApiScope(enum.StrEnum):
    pos = "pos"
    ingest = "ingest"
    admin = "admin"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = id_column()
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3), default="TWD")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Taipei")
    locale: Mapped[str] = mapped_column(String(10), default="zh_TW")
    created_at: Mapped[datetime] = created_at_column()


def tenant_fk() -> Mapped[str]:
    return mapped_column(String(26), ForeignKey("tenants.id", ondelete="CASCADE"),
                         primary_key=True)


class Store(Base):
    __tablename__ = "stores"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("latitude IS NULL OR (latitude >= -90 AND latitude <= 90)",
                        name="latitude_range"),
        CheckConstraint("longitude IS NULL OR (longitude >= -180 AND longitude <= 180)",
                        name="longitude_range"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(255), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    phone: Mapped[str] = mapped_column(String(32), default="")
    opening_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        string_enum(Role, 20)
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    # Raised on logout and password change: every session cookie signed with an older
    # epoch stops working, so logging out really ends the session.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_at_column()


class StaffStore(Base):
    """Which stores a store manager or cashier works in (owners and marketers see all)."""

    __tablename__ = "staff_stores"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "staff_id"],
                             ["staff_users.tenant_id", "staff_users.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "store_id"],
                             ["stores.tenant_id", "stores.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    staff_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(26), primary_key=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_api_keys_key_digest", "key_digest", unique=True),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column()
    store_id: Mapped[str | None] = mapped_column(String(26))
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_id_at", "tenant_id", "at"),)

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(26))
    actor_label: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(26))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(45))
