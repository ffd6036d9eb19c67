"""Campaigns: create, edit, launch, pause, end, list.

A campaign is edited freely while it is a draft. Once people hold its coupons, what they were
promised (kind, value, code mode) is locked; limits, dates and rules can still be tightened
or loosened, as operators need to mid-campaign.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from omniloop.campaigns.codes import pattern_capacity
from omniloop.campaigns.errors import (
    CampaignInvalid,
    CampaignLocked,
    CampaignNotFound,
    CampaignStatusConflict,
    SharedCodeTaken,
)
from omniloop.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CodeMode,
    Coupon,
)
from omniloop.campaigns.rules import STATUS_LABELS, current_status, status_filter
from omniloop.campaigns.schemas import CampaignCreate, CampaignUpdate
from omniloop.core.clock import as_utc, aware, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import gettext
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import Store
from omniloop.tenancy.tenants import get_tenant

audit.register_action("campaign.create", N_("Created a campaign"))
audit.register_action("campaign.update", N_("Edited a campaign"))
audit.register_action("campaign.launch", N_("Launched a campaign"))
audit.register_action("campaign.pause", N_("Paused a campaign"))
audit.register_action("campaign.end", N_("Ended a campaign"))

# What a claimed or redeemed coupon promised; changing it would break that promise.
LOCKED_FIELDS = ("kind", "value_minor", "percent_off", "max_discount_minor", "free_sku",
                 "gift_name", "code_mode", "shared_code")


TIME_FIELDS = ("starts_at", "ends_at", "coupon_valid_from", "coupon_valid_until")


def _in_utc(session: Session, tenant_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """Times from the client in UTC, those without an offset read in the brand's zone."""
    timezone = get_tenant(session, tenant_id).timezone
    return {name: aware(value, timezone) if name in TIME_FIELDS and value is not None
            else value for name, value in values.items()}


def normalize_code(code: str) -> str:
    """Codes compare case-insensitively: people type them in every case."""
    return code.strip().upper()


def _aware(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def check_campaign(session: Session, campaign: Campaign) -> None:
    """Refuse settings that do not fit together, naming the field at fault."""
    kind = campaign.kind
    if kind in (CampaignKind.amount_off, CampaignKind.voucher) and not campaign.value_minor:
        raise CampaignInvalid(N_("Give the value of the coupon."), field="value_minor")
    if kind == CampaignKind.percent_off and not campaign.percent_off:
        raise CampaignInvalid(N_("Give the percentage off."), field="percent_off")
    if kind == CampaignKind.free_item and not campaign.free_sku:
        raise CampaignInvalid(N_("Give the SKU of the free item."), field="free_sku")
    if kind == CampaignKind.gift and not campaign.gift_name:
        raise CampaignInvalid(N_("Name the gift."), field="gift_name")
    starts, ends = _aware(campaign.starts_at), _aware(campaign.ends_at)
    if starts is not None and ends is not None and ends <= starts:
        raise CampaignInvalid(N_("The end must come after the start."), field="ends_at")
    valid_from, valid_until = _aware(campaign.coupon_valid_from), _aware(
        campaign.coupon_valid_until)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise CampaignInvalid(N_("Coupons must be valid for some time."),
                              field="coupon_valid_until")
    if campaign.coupon_valid_days is not None and (valid_from or valid_until):
        raise CampaignInvalid(N_("Choose either days after claim or fixed dates."),
                              field="coupon_valid_days")
    if bool(campaign.hours_start) != bool(campaign.hours_end):
        raise CampaignInvalid(N_("Give both the start and the end of the hours."),
                              field="hours_end" if campaign.hours_start else "hours_start")
    if campaign.hours_start and campaign.hours_start == campaign.hours_end:
        raise CampaignInvalid(N_("The hours must not start and end at the same time."),
                              field="hours_end")
    if campaign.code_mode == CodeMode.shared and not campaign.shared_code:
        raise CampaignInvalid(N_("Give the shared code."), field="shared_code")
    if campaign.code_mode == CodeMode.unique and campaign.shared_code:
        raise CampaignInvalid(N_("A shared code needs the shared code mode."),
                              field="shared_code")
    if campaign.code_mode == CodeMode.unique:
        try:
            pattern_capacity(campaign.code_pattern)
        except CampaignInvalid as error:
            error.field = "code_pattern"
            raise
    if campaign.store_ids:
        known = set(session.scalars(select(Store.id).where(
            Store.tenant_id == campaign.tenant_id, Store.id.in_(campaign.store_ids))))
        unknown = [s for s in campaign.store_ids if s not in known]
        if unknown:
            raise CampaignInvalid(N_("Unknown store: {store}."), field="store_ids",
                                  store=unknown[0])
    if campaign.shared_code:
        campaign.shared_code = normalize_code(campaign.shared_code)
        _require_code_free(session, campaign)


def _require_code_free(session: Session, campaign: Campaign) -> None:
    code = campaign.shared_code
    other = session.scalar(select(Campaign.id).where(
        Campaign.tenant_id == campaign.tenant_id, Campaign.shared_code == code,
        Campaign.id != campaign.id))
    coupon = session.scalar(select(Coupon.id).where(Coupon.tenant_id == campaign.tenant_id,
                                                    Coupon.code == code))
    if other is not None or coupon is not None:
        raise SharedCodeTaken(code=code)


def _refused(status: CampaignStatus, action: str) -> CampaignStatusConflict:
    return CampaignStatusConflict(status=gettext(STATUS_LABELS[status]), action=gettext(action))


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    return {"name": campaign.name, "kind": campaign.kind.value, "status": campaign.status.value}


def create_campaign(session: Session, actor: Actor, data: CampaignCreate) -> Campaign:
    actor.require(Permission.campaigns_manage)
    values = _in_utc(session, actor.tenant_id, data.model_dump())
    campaign = Campaign(tenant_id=actor.tenant_id, status=CampaignStatus.draft,
                        created_by=actor.label, **values)
    check_campaign(session, campaign)
    session.add(campaign)
    session.flush()
    audit.record(session, actor, "campaign.create", "campaign", campaign.id, _snapshot(campaign))
    return campaign


def _has_takers(campaign: Campaign) -> bool:
    return campaign.claimed_count > 0 or campaign.redeemed_count > 0


def update_campaign(session: Session, actor: Actor, campaign_id: str,
                    data: CampaignUpdate) -> Campaign:
    actor.require(Permission.campaigns_manage)
    campaign = get_campaign(session, actor, campaign_id, for_update=True)
    if campaign.status == CampaignStatus.ended:
        raise _refused(CampaignStatus.ended, N_("edited"))
    changes = _in_utc(session, actor.tenant_id, data.model_dump(exclude_unset=True))
    if _has_takers(campaign):
        for name in LOCKED_FIELDS:
            if name in changes and changes[name] != getattr(campaign, name):
                raise CampaignLocked(field=name)
    before = {name: getattr(campaign, name) for name in changes}
    for name, value in changes.items():
        setattr(campaign, name, value)
    check_campaign(session, campaign)
    session.flush()
    audit.record(session, actor, "campaign.update", "campaign", campaign.id,
                 {"changes": {name: [before[name], changes[name]] for name in changes
                              if before[name] != changes[name]}})
    return campaign


def get_campaign(session: Session, actor: Actor, campaign_id: str, *,
                 for_update: bool = False) -> Campaign:
    """One campaign of the actor's brand; store staff read them too (the POS shows offers)."""
    if not (actor.can(Permission.campaigns_read) or actor.can(Permission.pos_use)):
        actor.require(Permission.campaigns_read)
    query = select(Campaign).where(Campaign.tenant_id == actor.tenant_id,
                                   Campaign.id == campaign_id)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalar(query)
    if campaign is None:
        raise CampaignNotFound()
    return campaign


def list_campaigns(session: Session, actor: Actor, *, status: CampaignStatus | None = None,
                   search: str | None = None, limit: int = 200) -> list[Campaign]:
    """Newest first; `status` is the status as of now (scheduled/active/ended by the clock)."""
    if not (actor.can(Permission.campaigns_read) or actor.can(Permission.pos_use)):
        actor.require(Permission.campaigns_read)
    query = select(Campaign).where(Campaign.tenant_id == actor.tenant_id)
    if search:
        query = query.where(func.lower(Campaign.name).contains(search.lower()))
    if status is not None:
        query = query.where(status_filter(status, utcnow()))
    return list(session.scalars(query.order_by(Campaign.created_at.desc(),
                                               Campaign.id.desc()).limit(limit)))


def launch_campaign(session: Session, actor: Actor, campaign_id: str) -> Campaign:
    """Draft or paused → running: active now, or scheduled until its start."""
    actor.require(Permission.campaigns_manage)
    campaign = get_campaign(session, actor, campaign_id, for_update=True)
    now = utcnow()
    status = current_status(campaign, now)
    if status not in (CampaignStatus.draft, CampaignStatus.paused):
        raise _refused(status, N_("launched"))
    if campaign.ends_at is not None and as_utc(campaign.ends_at) <= now:
        raise CampaignInvalid(N_("The campaign's end has passed: move it first."),
                              field="ends_at")
    check_campaign(session, campaign)
    campaign.status = (CampaignStatus.active if as_utc(campaign.starts_at) <= now
                       else CampaignStatus.scheduled)
    campaign.launched_at = campaign.launched_at or now
    session.flush()
    audit.record(session, actor, "campaign.launch", "campaign", campaign.id, _snapshot(campaign))
    return campaign


def pause_campaign(session: Session, actor: Actor, campaign_id: str) -> Campaign:
    """Stops claims and redemptions until launched again; coupons keep their validity."""
    actor.require(Permission.campaigns_manage)
    campaign = get_campaign(session, actor, campaign_id, for_update=True)
    status = current_status(campaign, utcnow())
    if status not in (CampaignStatus.active, CampaignStatus.scheduled):
        raise _refused(status, N_("paused"))
    campaign.status = CampaignStatus.paused
    session.flush()
    audit.record(session, actor, "campaign.pause", "campaign", campaign.id, _snapshot(campaign))
    return campaign


def end_campaign(session: Session, actor: Actor, campaign_id: str) -> Campaign:
    """Ends it for good: its coupons can no longer be claimed or redeemed."""
    actor.require(Permission.campaigns_manage)
    campaign = get_campaign(session, actor, campaign_id, for_update=True)
    status = current_status(campaign, utcnow())
    if status in (CampaignStatus.ended, CampaignStatus.draft):
        raise _refused(status, N_("ended"))
    now = utcnow()
    campaign.status = CampaignStatus.ended
    if campaign.ends_at is None or as_utc(campaign.ends_at) > now:
        campaign.ends_at = now
    session.flush()
    audit.record(session, actor, "campaign.end", "campaign", campaign.id, _snapshot(campaign))
    return campaign
