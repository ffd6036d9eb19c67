"""Brands. Created by operators (CLI), not through the tenant-scoped API."""

from __future__ import annotations

import re

from babel.numbers import UnknownCurrencyError, get_currency_name
from sqlalchemy import func, select

from omniloop.core.clock import is_valid_timezone
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import SUPPORTED_LOCALES
from omniloop.core.settings import get_settings
from omniloop.tenancy.errors import InvalidTenantSetting, TenantNotFound, TenantSlugTaken
from omniloop.tenancy.models import Tenant

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")


def create_tenant(session: Session, *, slug: str, name: str, currency: str | None = None,
                  timezone: str | None = None, locale: str | None = None) -> Tenant:
    settings = get_settings()
    slug = slug.strip().lower()
    currency = (currency or settings.default_currency).upper()
    timezone = timezone or settings.default_timezone
    locale = locale or settings.default_locale
    if not _SLUG.match(slug):
        raise InvalidTenantSetting(
            N_("A brand code is 2–40 lowercase letters, digits or '-': '{value}' is not."),
            value=slug)
    if not name.strip():
        raise InvalidTenantSetting(N_("A brand needs a name."))
    try:
        get_currency_name(currency)
    except UnknownCurrencyError:
        raise InvalidTenantSetting(N_("Unknown currency '{value}'."), value=currency) from None
    if len(currency) != 3:
        raise InvalidTenantSetting(N_("Unknown currency '{value}'."), value=currency)
    if not is_valid_timezone(timezone):
        raise InvalidTenantSetting(N_("Unknown time zone '{value}'."), value=timezone)
    if locale not in SUPPORTED_LOCALES:
        raise InvalidTenantSetting(N_("Unsupported language '{value}'."), value=locale)
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)):
        raise TenantSlugTaken(slug=slug)
    tenant = Tenant(slug=slug, name=name.strip(), currency=currency, timezone=timezone,
                    locale=locale)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound()
    return tenant


def get_tenant_by_slug(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug.strip().lower()))
    if tenant is None:
        raise TenantNotFound()
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def count_tenants(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Tenant)) or 0
