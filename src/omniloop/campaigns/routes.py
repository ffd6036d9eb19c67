"""HTTP API of campaigns and claims. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from pydantic import Field

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.campaigns import claims, service
from omniloop.campaigns.models import Campaign, CampaignStatus
from omniloop.campaigns.rules import current_status
from omniloop.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignUpdate,
    ClaimIn,
    ClaimOut,
    coupon_out,
)
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.tenancy.tenants import get_tenant

router = APIRouter(tags=["campaigns"])


def _out(session: Session, campaign: Campaign) -> CampaignOut:
    currency = get_tenant(session, campaign.tenant_id).currency
    return CampaignOut.of(campaign, current_status(campaign, utcnow()), currency)


@router.get("/campaigns", summary="List campaigns", response_model=list[CampaignOut])
def list_campaigns(actor: ApiActor, session: SessionDep,
                   status_: CampaignStatus | None = Query(default=None, alias="status",
                                                          description="As of now."),
                   q: str | None = Query(default=None, max_length=120,
                                         description="Part of the name.")) -> list[CampaignOut]:
    """Newest first."""
    return [_out(session, c)
            for c in service.list_campaigns(session, actor, status=status_, search=q)]


@router.post("/campaigns", summary="Create a campaign (draft)", response_model=CampaignOut,
             status_code=status.HTTP_201_CREATED)
def create_campaign(body: CampaignCreate, actor: ApiActor, session: SessionDep) -> CampaignOut:
    """A new campaign starts as a draft; launch it to open claims and redemptions.

    Settings that do not fit together answer 422 `campaign_invalid` naming the `field`.
    """
    return _out(session, service.create_campaign(session, actor, body))


@router.get("/campaigns/{campaign_id}", summary="Get a campaign", response_model=CampaignOut)
def get_campaign(campaign_id: str, actor: ApiActor, session: SessionDep) -> CampaignOut:
    return _out(session, service.get_campaign(session, actor, campaign_id))


@router.patch("/campaigns/{campaign_id}", summary="Edit a campaign", response_model=CampaignOut)
def update_campaign(campaign_id: str, body: CampaignUpdate, actor: ApiActor,
                    session: SessionDep) -> CampaignOut:
    """Only the fields sent change. Once coupons are claimed or redeemed the offer itself
    (kind, value, code mode) is locked: 409 `campaign_locked`."""
    return _out(session, service.update_campaign(session, actor, campaign_id, body))


@router.post("/campaigns/{campaign_id}/launch", summary="Launch or resume",
             response_model=CampaignOut)
def launch(campaign_id: str, actor: ApiActor, session: SessionDep) -> CampaignOut:
    """A draft or paused campaign becomes active (or scheduled until its start)."""
    return _out(session, service.launch_campaign(session, actor, campaign_id))


@router.post("/campaigns/{campaign_id}/pause", summary="Pause", response_model=CampaignOut)
def pause(campaign_id: str, actor: ApiActor, session: SessionDep) -> CampaignOut:
    return _out(session, service.pause_campaign(session, actor, campaign_id))


@router.post("/campaigns/{campaign_id}/end", summary="End for good", response_model=CampaignOut)
def end(campaign_id: str, actor: ApiActor, session: SessionDep) -> CampaignOut:
    return _out(session, service.end_campaign(session, actor, campaign_id))


@router.post("/campaigns/{campaign_id}/claims", summary="Claim a coupon for someone",
             response_model=ClaimOut, status_code=status.HTTP_201_CREATED)
def claim(campaign_id: str, body: ClaimIn, actor: ApiActor, session: SessionDep) -> ClaimOut:
    """Identify the person (as /customers/identify does) and put a coupon in their wallet.

    For integrations that run their own claim flow (an app, a LINE bot). A repeated claim
    within the per-customer limit returns the coupon already held, with `created: false`.
    """
    result = claims.claim_coupon(session, actor, campaign_id, body)
    coupon = result.coupon
    token = sign_token(actor.tenant_id, TokenKind.COUPON, coupon.id, claims.token_expiry(coupon))
    return ClaimOut(coupon=coupon_out(coupon, token), customer_id=result.customer.id,
                    created=result.created,
                    wallet_url=get_settings().base_url.rstrip("/") + claims.wallet_path(
                        session, actor.tenant_id, result.customer.id))


class AudienceIn(RequestModel):
    customer_ids: list[str] = Field(min_length=1, max_length=10_000)


class AudienceOut(ResponseModel):
    targets: list[str]
    holdout: list[str]
    already_assigned: int


@router.post("/campaigns/{campaign_id}/audience", summary="Assign an audience (holdout)",
             response_model=AudienceOut)
def assign_audience(campaign_id: str, body: AudienceIn, actor: ApiActor,
                    session: SessionDep) -> AudienceOut:
    """Split the people you intend to reach into targets and a random holdout of the
    campaign's `holdout_share_bp`, recorded for lift. Send only to `targets`. Asking again
    returns the same split; unknown or merged-away ids are left out."""
    split = claims.assign_audience(session, actor, campaign_id, body.customer_ids)
    return AudienceOut(targets=split.targets, holdout=split.holdout,
                       already_assigned=split.already_assigned)
