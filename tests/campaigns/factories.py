"""Factories for campaigns tests. Each commits, as a real request would."""

from __future__ import annotations

from datetime import timedelta
from itertools import count
from typing import Any

from omniloop.campaigns import claims, service
from omniloop.campaigns.codes import generate_codes, parse_pattern
from omniloop.campaigns.models import Campaign, Coupon
from omniloop.campaigns.schemas import CampaignCreate, ClaimIn
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.schemas import IdentityIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.tenancy.factories import fresh

_seq = count(1)


def campaign_body(**fields: Any) -> dict[str, Any]:
    """A JSON body for POST /campaigns: NT$100 off, from an hour ago, for a month."""
    now = utcnow()
    body: dict[str, Any] = {
        "name": f"秋季折價 {next(_seq)}", "kind": "amount_off", "value_minor": 10000,
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat()}
    body.update(fields)
    return body


def make_campaign(session: Session, tenant: Tenant, *, launch: bool = True,
                  **fields: Any) -> Campaign:
    fresh(session)
    actor = system_actor(tenant.id)
    campaign = service.create_campaign(session, actor,
                                       CampaignCreate.model_validate(campaign_body(**fields)))
    if launch:
        service.launch_campaign(session, actor, campaign.id)
    session.commit()
    return campaign


def make_codes(database: Database, campaign: Campaign, count_: int,
               pattern: str = "TEST-######") -> list[str]:
    with database.engine.begin() as connection:
        generate_codes(connection, tenant_id=campaign.tenant_id, campaign_id=campaign.id,
                       batch_id=None, pattern=parse_pattern(pattern), count=count_)
    with database.read_sessionmaker() as s:
        from sqlalchemy import select
        return list(s.scalars(select(Coupon.code).where(
            Coupon.tenant_id == campaign.tenant_id, Coupon.campaign_id == campaign.id)
            .order_by(Coupon.code)))


def claim_for(session: Session, tenant: Tenant, campaign: Campaign,
              phone: str = "0912-345-678", channel: str = "web") -> Coupon:
    fresh(session)
    result = claims.claim_coupon(session, system_actor(tenant.id), campaign.id, ClaimIn(
        identities=[IdentityIn(kind="phone", value=phone)], channel=channel))
    session.commit()
    return result.coupon
