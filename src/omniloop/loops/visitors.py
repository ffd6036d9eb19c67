"""Who is on the phone in front of a touchpoint, and what they get for it.

Identification reuses the claim page's rules (campaigns.consumer_pages): a mobile number,
plus the browser's anonymous device id when that cannot merge two people; a number someone
already holds is trusted only from a browser that already belongs to that profile. A visitor
token, signed and short-lived, carries the result from one page of the visit to the next.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from omniloop.campaigns import claims
from omniloop.campaigns.consumer_pages import device_identity, device_trusted, phone_holder
from omniloop.campaigns.errors import CouponRefused
from omniloop.campaigns.models import Coupon
from omniloop.campaigns.schemas import Attribution
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.settings import get_settings
from omniloop.customers.identify import identify_profile
from omniloop.customers.models import Customer, IdentityKind
from omniloop.customers.profiles import survivor_ids
from omniloop.customers.schemas import IdentityIn
from omniloop.loyalty.ledger import Source, credit, expiry_for
from omniloop.loyalty.models import EntryKind
from omniloop.loyalty.program import get_program
from omniloop.tenancy.access import Actor

VISITOR_MAX_AGE = 2 * 3600  # one visit: the meal, the queue, the walk home
_SALT = "omniloop.loops.visitor"


@dataclass(frozen=True)
class Visitor:
    tenant_id: str
    customer_id: str
    phone: str
    trusted: bool  # this browser may see the profile's wallet and referral link


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().resolved_secret_key(), salt=_SALT)


def visitor_token(visitor: Visitor) -> str:
    return _serializer().dumps([visitor.tenant_id, visitor.customer_id, visitor.phone,
                                visitor.trusted])


def visitor_from_token(token: str, tenant_id: str) -> Visitor | None:
    """The visitor a token names, or None for a forged, stale or other brand's token."""
    try:
        value = _serializer().loads(token, max_age=VISITOR_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    if (not isinstance(value, list) or len(value) != 4 or value[0] != tenant_id
            or not isinstance(value[1], str) or not isinstance(value[2], str)):
        return None
    return Visitor(tenant_id=value[0], customer_id=value[1], phone=value[2],
                   trusted=bool(value[3]))


def identify_visitor(session: Session, actor: Actor, phone_e164: str,
                     device_id: str | None, *, source: str, verified: bool = False) -> Visitor:
    """Find or create the profile of this number; join the device when that is safe.

    `verified`: the person typed the code texted to the number (`messaging.otp`), which
    proves they hold the phone as well as a browser already tied to the profile does (the
    claim page trusts it the same way)."""
    holder = phone_holder(session, actor.tenant_id, phone_e164)
    trusted = verified or device_trusted(session, actor.tenant_id, holder, device_id)
    identities = [IdentityIn(kind=IdentityKind.phone, value=phone_e164)]
    device = (device_identity(session, actor.tenant_id, device_id, phone_e164)
              if trusted else None)
    if device is not None:
        identities.append(device)
    done = identify_profile(session, actor, identities, source=source)
    return Visitor(tenant_id=actor.tenant_id, customer_id=done.customer_id, phone=phone_e164,
                   trusted=trusted)


def new_device_id() -> str:
    return secrets.token_urlsafe(18)


def _profile(session: Session, visitor: Visitor) -> Customer:
    """The visitor's live profile (a visitor token may name one merged away since)."""
    survivor = survivor_ids(session, visitor.tenant_id, [visitor.customer_id])
    return session.get_one(Customer, (visitor.tenant_id, survivor[visitor.customer_id]))


@dataclass(frozen=True)
class Reward:
    coupon: Coupon | None = None
    points: int = 0
    refused: str | None = None  # why a coupon could not be given (offer closed, …)


def give_reward(session: Session, actor: Actor, visitor: Visitor, *, key: str,
                campaign_id: str | None, points: int, reason: str, touchpoint_code: str,
                now: datetime | None = None) -> Reward:
    """The incentive the touchpoint promised: a coupon of its campaign and/or points.

    Exactly once per `key` (the caller names the occasion: a join, one visit's feedback), and
    never depending on what the person answered. A coupon comes through the campaigns claim,
    so its limits hold; a closed offer is reported, not hidden.
    """
    now = now or utcnow()
    coupon = None
    refused = None
    if campaign_id:
        try:
            with session.begin_nested():
                result = claims.issue_coupon(
                    session, actor, campaign_id, _profile(session, visitor), channel="qr",
                    attribution=Attribution(touchpoint=touchpoint_code)
                    .model_dump(exclude_none=True), now=now)
            coupon = result.coupon
        except CouponRefused as error:
            refused = error.localized()
    given = 0
    if points > 0:
        program = get_program(session, actor.tenant_id)
        credit(session, actor, visitor.customer_id, points, EntryKind.earn, key,
               Source(reason=reason, reference=touchpoint_code),
               expires_at=expiry_for(program, now))
        given = points
    return Reward(coupon=coupon, points=given, refused=refused)
