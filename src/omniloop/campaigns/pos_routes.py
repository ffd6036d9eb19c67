"""POS API: validate a coupon, redeem it exactly once, void a redemption, the QR key.

Thin: parse, call `campaigns.redemption`, shape the answer. Failed lookups (unknown codes,
tokens that do not verify) are rate-limited per caller and per IP (`guessing`).

Validate and redeem are what every till calls for every coupon, so they are `async def` and
run their whole unit of work in one trip to the threadpool (`deps.in_unit_of_work`; a sync
route with `SessionDep` makes three: the session's start, the route, the session's end),
committed before the answer is sent. Validation, which changes nothing, runs in a read
transaction although it is a POST, so on SQLite it neither waits for nor holds the write
lock. Both take (body, actor, request) and answer a ready `Response`, so the API's fast lane
(`api.fastlane`) can call them without FastAPI's request machinery; a redemption's answer is
serialised after its unit of work, outside SQLite's write lock.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from omniloop.api.deps import ApiActor, SessionDep, client_ip, in_unit_of_work
from omniloop.campaigns.errors import CouponNotFound, CouponRefused
from omniloop.campaigns.guessing import guarded_lookup
from omniloop.campaigns.redemption import RedeemResult, evaluate, redeem, void_redemption
from omniloop.campaigns.rules import describe_value
from omniloop.campaigns.schemas import (
    CampaignBrief,
    PosCheckIn,
    ReasonOut,
    RedeemIn,
    RedemptionOut,
    ValidationOut,
    VoidIn,
)
from omniloop.core.db import Session
from omniloop.core.errors import OmniloopError
from omniloop.core.schemas import ResponseModel, json_response
from omniloop.core.tokens import TokenExpired, TokenInvalid, TokenWrongKind, TokenWrongTenant
from omniloop.core.tokens import public_key_info as tenant_public_key
from omniloop.tenancy.access import Actor
from omniloop.tenancy.tenants import get_tenant

router = APIRouter(prefix="/pos", tags=["pos"])

# What a validation answers as "not usable" rather than as an error of the request itself.
_REFUSALS = (CouponRefused, CouponNotFound, TokenInvalid, TokenWrongTenant, TokenExpired,
             TokenWrongKind)


@router.post("/validate", summary="Check a coupon", response_model=ValidationOut)
async def validate(body: PosCheckIn, actor: ApiActor, request: Request) -> Response:
    """Whether the code or QR token applies to this basket at this store, and its discount;
    or, with `valid: false`, the exact reason (`reason.code` is stable, `reason.message` is
    for the cashier in the request's language). Nothing is changed.

    Needs the `pos` scope. A store the key is not bound to answers 404 `store_not_found`.
    """
    ip = client_ip(request)
    # A read transaction although the method is POST: validation changes nothing.
    return json_response(await in_unit_of_work(
        request, lambda session: _validation(session, actor, body, ip), write=False))


def _validation(session: Session, actor: Actor, body: PosCheckIn,
                ip: str | None) -> ValidationOut:
    try:
        with guarded_lookup(actor, ip):
            evaluation = evaluate(session, actor, body)
    except _REFUSALS as refusal:
        currency = get_tenant(session, actor.tenant_id).currency
        return ValidationOut(valid=False, discount_minor=0, currency=currency, campaign=None,
                             coupon_id=None, code=None, customer_id=None, valid_until=None,
                             reason=_reason(refusal))
    currency = evaluation.tenant.currency
    target = evaluation.target
    campaign = target.campaign
    return ValidationOut(
        valid=True, discount_minor=evaluation.discount_minor, currency=currency,
        campaign=CampaignBrief(id=campaign.id, name=campaign.name, kind=campaign.kind,
                               offer=describe_value(campaign, currency),
                               stacking=campaign.stacking),
        coupon_id=target.coupon.id if target.coupon else None, code=target.code,
        customer_id=evaluation.customer_id,
        valid_until=evaluation.valid_until,
        reason=None)


def _reason(error: OmniloopError) -> ReasonOut:
    return ReasonOut(code=error.code, message=error.localized())


@router.post("/redeem", summary="Redeem a coupon", response_model=RedemptionOut,
             status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "A retry: the first result, unchanged."}})
async def redeem_coupon(
    body: RedeemIn, actor: ApiActor, request: Request,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", description="Unique per redemption attempt (1–100 "
                                             "characters). A retry with the same key and "
                                             "body returns the first result.")] = None,
) -> Response:
    """Use the coupon: exactly once, however many retries or concurrent scans.

    The same checks as /pos/validate; a refusal answers 409 with its stable code
    (`coupon_already_redeemed`, `quota_exhausted`, `minimum_spend_not_met`, …). With
    `order_lines`, the purchase is recorded as an order carrying the coupon's discount.
    """
    ip = client_ip(request)

    def work(session: Session) -> RedeemResult:
        with guarded_lookup(actor, ip):
            return redeem(session, actor, body, idempotency_key)

    # The redemption comes back with every column loaded (a new one is made from the row it
    # wrote; a replay's was read), so it is serialised after the unit of work.
    result = await in_unit_of_work(request, work)
    out = RedemptionOut.of(result.redemption)
    if result.replayed:
        return json_response(out, headers={"Idempotent-Replayed": "true"})
    return json_response(out, status.HTTP_201_CREATED)


@router.post("/redemptions/{redemption_id}/void", summary="Void a redemption",
             response_model=RedemptionOut)
def void(redemption_id: str, body: VoidIn, actor: ApiActor,
         session: SessionDep) -> RedemptionOut:
    """Undo a redemption within the void window (`OMNILOOP_REDEMPTION_VOID_MINUTES`, 30 by
    default): the coupon can be used again and the campaign's quota and budget get it back.
    Voiding again returns the voided redemption unchanged."""
    return RedemptionOut.of(void_redemption(session, actor, redemption_id, body.reason))


class PublicKeyOut(ResponseModel):
    tenant_id: str
    token_prefix: str
    kid: str
    alg: str
    public_key: str
    public_key_pem: str


@router.get("/qr-key", summary="The brand's QR verification key", response_model=PublicKeyOut)
def public_key(actor: ApiActor) -> PublicKeyOut:
    """The Ed25519 public key that signs this brand's coupon and member QR tokens, so a POS
    can check a QR is genuine while offline (see docs/qr-tokens.md). Only the server decides
    redemption."""
    return PublicKeyOut(**tenant_public_key(actor.tenant_id))
