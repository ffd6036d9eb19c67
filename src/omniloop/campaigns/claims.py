"""Claiming coupons into a person's wallet, the wallet itself, and audiences with holdouts.

A claim identifies the person (phone now, LINE later) through `customers.identify`, so the
coupon lands on the one profile that also holds their orders and visits. Claiming again what
one already holds gives back the same coupon: people tap a claim button twice, and links get
opened from two devices.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns.codes import make_code
from omniloop.campaigns.errors import (
    ClaimChannelNotAllowed,
    ClaimLimitReached,
    ClaimsExhausted,
    NewCustomersOnly,
    NoCodesLeft,
)
from omniloop.campaigns.limits import take_participant_slot
from omniloop.campaigns.models import (
    AudienceGroup,
    Campaign,
    CampaignParticipant,
    CodeMode,
    Coupon,
    CouponStatus,
)
from omniloop.campaigns.rules import coupon_validity, require_running
from omniloop.campaigns.schemas import ClaimIn
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.settings import get_settings
from omniloop.customers.errors import CustomerNotFound
from omniloop.customers.events import record_event
from omniloop.customers.identify import identify
from omniloop.customers.models import Customer
from omniloop.customers.profiles import profile_ids, survivor_ids
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant

_CODE_RETRIES = 8
_AUDIENCE_CHUNK = 5_000


@dataclass(frozen=True)
class ClaimResult:
    coupon: Coupon
    customer: Customer
    created: bool


def _wallet_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().resolved_secret_key(), salt="omniloop.wallet")


def wallet_token(tenant_id: str, customer_id: str, only_coupon_id: str | None = None) -> str:
    """The secret part of a wallet link: signed, so nobody can open another's.

    `only_coupon_id` makes a link that shows that one coupon: what a claim from a browser
    that cannot prove it belongs to the number's owner may see (see consumer_pages).
    """
    value = [tenant_id, customer_id] + ([only_coupon_id] if only_coupon_id else [])
    return _wallet_serializer().dumps(value)


@dataclass(frozen=True)
class WalletAccess:
    customer_id: str
    only_coupon_id: str | None


def wallet_access(token: str, tenant_id: str) -> WalletAccess:
    try:
        value = _wallet_serializer().loads(token)
    except BadSignature as error:
        raise CustomerNotFound() from error
    if (not isinstance(value, list) or len(value) not in (2, 3) or value[0] != tenant_id
            or not all(isinstance(part, str) for part in value)):
        raise CustomerNotFound()
    return WalletAccess(customer_id=value[1],
                        only_coupon_id=value[2] if len(value) == 3 else None)


def wallet_path(session: Session, tenant_id: str, customer_id: str,
                only_coupon_id: str | None = None) -> str:
    slug = get_tenant(session, tenant_id).slug
    return f"/c/{slug}/wallet/{wallet_token(tenant_id, customer_id, only_coupon_id)}"


def _is_new_customer(session: Session, tenant_id: str, ids: set[str]) -> bool:
    paid = session.scalar(select(func.count()).select_from(Order).where(
        Order.tenant_id == tenant_id, Order.customer_id.in_(ids)))
    return not paid


def _held(session: Session, campaign: Campaign, ids: set[str]) -> list[Coupon]:
    return list(session.scalars(select(Coupon).where(
        Coupon.tenant_id == campaign.tenant_id, Coupon.campaign_id == campaign.id,
        Coupon.customer_id.in_(ids)).order_by(Coupon.claimed_at, Coupon.id)))


def claim_coupon(session: Session, actor: Actor, campaign_id: str, data: ClaimIn,
                 *, now: datetime | None = None) -> ClaimResult:
    """Put one of the campaign's coupons into the wallet of the person `data` identifies."""
    actor.require(Permission.customers_write)
    now = now or utcnow()
    campaign = get_campaign(session, actor, campaign_id)
    # Refused before identifying, so a refused claim creates no profile.
    _require_claimable(session, campaign, data.channel, now)
    customer = identify(session, actor, data.identities, source=f"claim:{data.channel}").customer
    attribution = data.attribution.model_dump(exclude_none=True) if data.attribution else None
    return _issue(session, actor, campaign, customer, data.channel, attribution, now)


def issue_coupon(session: Session, actor: Actor, campaign_id: str, customer: Customer, *,
                 channel: str, attribution: dict[str, Any] | None = None,
                 now: datetime | None = None) -> ClaimResult:
    """Put a coupon into the wallet of a known customer (birthday coupons, make-goods,
    rewards), under exactly the rules and limits of a claim."""
    actor.require(Permission.customers_write)
    now = now or utcnow()
    campaign = get_campaign(session, actor, campaign_id)
    _require_claimable(session, campaign, channel, now)
    return _issue(session, actor, campaign, customer, channel, attribution, now)


def _require_claimable(session: Session, campaign: Campaign, channel: str,
                       now: datetime) -> None:
    require_running(campaign, now, get_tenant(session, campaign.tenant_id).timezone)
    if campaign.claim_channels and channel not in campaign.claim_channels:
        raise ClaimChannelNotAllowed(channel=channel)


def _issue(session: Session, actor: Actor, campaign: Campaign, customer: Customer,
           channel: str, attribution: dict[str, Any] | None, now: datetime) -> ClaimResult:
    ids = profile_ids(session, actor.tenant_id, customer.id)
    held = _held(session, campaign, ids)
    if len(held) >= campaign.per_customer_limit:
        usable = [c for c in held if c.status == CouponStatus.claimed]
        if usable:
            return ClaimResult(coupon=usable[-1], customer=customer, created=False)
        raise ClaimLimitReached(limit=campaign.per_customer_limit)
    if campaign.new_customers_only and not held and not _is_new_customer(
            session, actor.tenant_id, ids):
        raise NewCustomersOnly()
    with session.begin_nested():
        if not take_participant_slot(session, campaign, customer.id, "claims",
                                     campaign.per_customer_limit):
            raise ClaimLimitReached(limit=campaign.per_customer_limit)
        counted = session.execute(
            update(Campaign)
            .where(Campaign.tenant_id == campaign.tenant_id, Campaign.id == campaign.id,
                   (Campaign.quota.is_(None)) | (Campaign.claimed_count < Campaign.quota))
            .values(claimed_count=Campaign.claimed_count + 1)
            .execution_options(synchronize_session=False))
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            raise ClaimsExhausted()
        coupon = _coupon_for_claim(session, campaign)
        validity = coupon_validity(campaign, now)
        coupon.customer_id = customer.id
        coupon.status = CouponStatus.claimed
        coupon.claim_channel = channel
        coupon.attribution = attribution
        coupon.claimed_at = now
        coupon.valid_from = validity.valid_from
        coupon.valid_until = validity.valid_until
        session.flush()
    session.refresh(campaign, ["claimed_count"])
    record_event(session, actor, client_event_id=f"coupon_claimed:{coupon.id}",
                 type="coupon_claimed", channel="online", source=channel,
                 customer_id=customer.id, campaign_id=campaign.id, occurred_at=now,
                 properties={"coupon_id": coupon.id, **(coupon.attribution or {})})
    return ClaimResult(coupon=coupon, customer=customer, created=True)


def _coupon_for_claim(session: Session, campaign: Campaign) -> Coupon:
    """A generated code from the pool if one is left, else a new one (or none: shared)."""
    if campaign.code_mode == CodeMode.shared:
        coupon = Coupon(tenant_id=campaign.tenant_id, campaign_id=campaign.id, code=None)
        session.add(coupon)
        session.flush()
        return coupon
    for _ in range(_CODE_RETRIES):
        query = (select(Coupon.id).where(Coupon.tenant_id == campaign.tenant_id,
                                         Coupon.campaign_id == campaign.id,
                                         Coupon.status == CouponStatus.available)
                 .order_by(Coupon.id).limit(1))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        pooled = session.scalar(query)
        if pooled is None:
            break
        taken = session.execute(
            update(Coupon).where(Coupon.tenant_id == campaign.tenant_id, Coupon.id == pooled,
                                 Coupon.status == CouponStatus.available)
            .values(status=CouponStatus.claimed)
            .execution_options(synchronize_session=False))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            pooled_coupon = session.get(Coupon, (campaign.tenant_id, pooled))
            assert pooled_coupon is not None
            session.refresh(pooled_coupon)
            return pooled_coupon
    for _ in range(_CODE_RETRIES):
        try:
            with session.begin_nested():
                coupon = Coupon(tenant_id=campaign.tenant_id, campaign_id=campaign.id,
                                code=make_code(campaign.code_pattern))
                session.add(coupon)
                session.flush()
                return coupon
        except IntegrityError:
            continue  # the random code was taken: draw again
    raise NoCodesLeft()


def wallet_coupons(session: Session, tenant_id: str, customer_id: str) -> list[Coupon]:
    """Every coupon the person holds, across profiles merged into theirs; newest first."""
    survivor = survivor_ids(session, tenant_id, [customer_id])[customer_id]
    ids = profile_ids(session, tenant_id, survivor)
    return list(session.scalars(select(Coupon).where(
        Coupon.tenant_id == tenant_id, Coupon.customer_id.in_(ids))
        .order_by(Coupon.claimed_at.desc(), Coupon.id.desc())))


@dataclass(frozen=True)
class AudienceSplit:
    targets: list[str]
    holdout: list[str]
    already_assigned: int


def assign_audience(session: Session, actor: Actor, campaign_id: str,
                    customer_ids: list[str], *, draw: Callable[[int], int] | None = None,
                    now: datetime | None = None) -> AudienceSplit:
    """Split an intended audience into targets and a random holdout, and record it.

    Each person is drawn once per campaign; asking again returns the earlier draw, so a
    re-sent campaign never moves someone from the holdout into the targets. `draw(n)` gives
    a number below n (default: the OS's CSPRNG); the demo loader passes a seeded one so its
    holdout is the same on every load, and `now` so the assignment predates its claims.
    """
    actor.require(Permission.campaigns_manage)
    campaign = get_campaign(session, actor, campaign_id)
    wanted = list(dict.fromkeys(customer_ids))
    # In chunks: SQLite and PostgreSQL cap the parameters of one statement (32,766 and
    # 65,535), and a LINE campaign's audience can be far larger.
    known: set[str] = set()
    existing: dict[str, CampaignParticipant] = {}
    for start in range(0, len(wanted), _AUDIENCE_CHUNK):
        chunk = wanted[start:start + _AUDIENCE_CHUNK]
        known.update(session.scalars(select(Customer.id).where(
            Customer.tenant_id == actor.tenant_id, Customer.id.in_(chunk),
            Customer.merged_into_id.is_(None), Customer.erased_at.is_(None))))
        existing.update((p.customer_id, p) for p in session.scalars(
            select(CampaignParticipant).where(
                CampaignParticipant.tenant_id == actor.tenant_id,
                CampaignParticipant.campaign_id == campaign.id,
                CampaignParticipant.customer_id.in_(chunk))))
    targets: list[str] = []
    holdout: list[str] = []
    new_rows: list[dict[str, object]] = []
    already = 0
    now = now or utcnow()
    randbelow = draw or secrets.randbelow
    for customer_id in wanted:
        if customer_id not in known:
            continue
        participant = existing.get(customer_id)
        if participant is not None and participant.audience_group is not None:
            already += 1
            group = participant.audience_group
        else:
            group = (AudienceGroup.holdout
                     if randbelow(10_000) < campaign.holdout_share_bp
                     else AudienceGroup.target)
            if participant is None:
                # New participants in one bulk INSERT: ORM objects cost ~100 µs each, which
                # a 100,000-person send cannot afford.
                new_rows.append({"tenant_id": actor.tenant_id, "campaign_id": campaign.id,
                                 "customer_id": customer_id, "claims": 0, "redemptions": 0,
                                 "audience_group": group, "assigned_at": now})
            else:
                participant.audience_group = group
                participant.assigned_at = now
        (holdout if group == AudienceGroup.holdout else targets).append(customer_id)
    session.flush()
    if new_rows:
        session.execute(insert(CampaignParticipant.__table__), new_rows)  # type: ignore[arg-type]
    return AudienceSplit(targets=targets, holdout=holdout, already_assigned=already)


def token_expiry(coupon: Coupon) -> datetime:
    """A coupon's QR token lives as long as the coupon, and at most a year without an end."""
    if coupon.valid_until is not None:
        return as_utc(coupon.valid_until)
    return utcnow() + timedelta(days=365)
