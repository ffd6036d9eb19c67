"""Referrals: a member's code, link and QR; a friend's welcome coupon; the qualifying
first store purchase; both rewards, exactly once.

Rules (docs/loops.md):

* A friend is someone new to the brand: no orders yet and not referred before. A number
  someone already holds may still be "new" (joined at a table, never bought).
* Self-referral is refused with the reason: the friend's number is the member's own, the
  browser belongs to the member's profile, or the two profiles are one person (merged).
* At most `monthly_cap` friends per member per calendar month (brand's time zone). The
  member's code row is locked first, so concurrent sign-ups of one member's friends queue
  and the cap holds on PostgreSQL too.
* One level only: only the direct referrer is rewarded; a friend's own friends reward the
  friend, never the member above.
* The referral qualifies at the friend's first store purchase (a coupon redeemed at the POS
  or an order recorded with a store) within `qualify_days` of signing up. Past the window it
  expires (loops/jobs.py, hourly); a purchase made within the window that arrives after the
  job (an offline POS catching up) still qualifies it, one made after the window never. The change
  pending → qualified is one conditional UPDATE; only the transaction whose UPDATE changed
  the row credits the points, each credit under its own idempotency key, so concurrent
  purchases and retries reward once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from omniloop.campaigns import claims
from omniloop.campaigns.codes import make_code
from omniloop.campaigns.models import Coupon
from omniloop.campaigns.schemas import Attribution
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, Conflict
from omniloop.core.i18n import gettext
from omniloop.core.prepared import Prepared
from omniloop.customers.events import record_event
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.profiles import profile_ids, survivor_ids
from omniloop.loops.errors import (
    AlreadyReferred,
    NotNewCustomer,
    ReferralCapReached,
    ReferralCodeNotFound,
    ReferralsOff,
    SelfReferral,
)
from omniloop.loops.models import Referral, ReferralCode, ReferralStatus
from omniloop.loops.program import get_program
from omniloop.loops.visitors import identify_visitor
from omniloop.loyalty.ledger import Source, credit, expiry_for
from omniloop.loyalty.models import EntryKind
from omniloop.loyalty.program import get_program as get_loyalty_program
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant

CODE_PATTERN = "######"  # 30^6 ≈ 7 × 10^8 per brand
_CODE_RETRIES = 8

REASON_PHONE = N_("it is your own phone number")
REASON_DEVICE = N_("this phone is already signed in as the member who shared it")
REASON_PROFILE = N_("this number belongs to the member who shared it")


def _survivor(session: Session, tenant_id: str, customer_id: str) -> str:
    return survivor_ids(session, tenant_id, [customer_id])[customer_id]


def code_for(session: Session, actor: Actor, customer_id: str) -> str:
    """The member's referral code, made the first time it is asked for."""
    actor.require(Permission.customers_write)
    member = _survivor(session, actor.tenant_id, customer_id)
    existing = session.scalar(select(ReferralCode.code).where(
        ReferralCode.tenant_id == actor.tenant_id,
        ReferralCode.customer_id.in_(profile_ids(session, actor.tenant_id, member))))
    if existing is not None:
        return existing
    for _ in range(_CODE_RETRIES):
        try:
            with session.begin_nested():
                row = ReferralCode(tenant_id=actor.tenant_id, customer_id=member,
                                   code=make_code(CODE_PATTERN))
                session.add(row)
                session.flush()
            return row.code
        except IntegrityError:
            found = session.scalar(select(ReferralCode.code).where(
                ReferralCode.tenant_id == actor.tenant_id,
                ReferralCode.customer_id == member))
            if found is not None:
                return found  # made concurrently for this member
    raise Conflict()


def referrer_of(session: Session, tenant_id: str, code: str) -> ReferralCode:
    row = session.scalar(select(ReferralCode).where(ReferralCode.tenant_id == tenant_id,
                                                    ReferralCode.code == code.strip().upper()))
    if row is None:
        raise ReferralCodeNotFound()
    return row


def month_start(now: datetime, timezone: str) -> datetime:
    local = to_local(now, timezone)
    return as_utc(local.replace(day=1, hour=0, minute=0, second=0, microsecond=0))


@dataclass(frozen=True)
class ReferralResult:
    referral: Referral
    coupon: Coupon
    friend_id: str
    trusted: bool
    created: bool


def refer(session: Session, actor: Actor, code: str, phone_e164: str, device_id: str | None,
          *, now: datetime | None = None, verified: bool = False) -> ReferralResult:
    """A friend, by phone, signs up through a member's code and gets the welcome coupon.
    `verified`: the friend typed the code texted to the number (see `identify_visitor`)."""
    actor.require(Permission.customers_write)
    now = now or utcnow()
    tenant_id = actor.tenant_id
    program = get_program(session, tenant_id)
    if not program.welcome_campaign_id or program.monthly_cap == 0:
        raise ReferralsOff()
    row = referrer_of(session, tenant_id, code)
    # Lock the member's code row: concurrent sign-ups for one member queue here.
    session.execute(update(ReferralCode).where(
        ReferralCode.tenant_id == tenant_id, ReferralCode.customer_id == row.customer_id)
        .values(code=ReferralCode.code).execution_options(synchronize_session=False))
    member = _survivor(session, tenant_id, row.customer_id)
    member_ids = profile_ids(session, tenant_id, member)
    holder_row = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == IdentityKind.phone,
        CustomerIdentity.value == phone_e164))
    holder = _survivor(session, tenant_id, holder_row) if holder_row else None
    if holder is not None and holder == member:
        member_phones = set(session.scalars(select(CustomerIdentity.value).where(
            CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == IdentityKind.phone,
            CustomerIdentity.customer_id.in_(member_ids))))
        raise SelfReferral(reason=gettext(
            REASON_PHONE if phone_e164 in member_phones else REASON_PROFILE))
    if device_id is not None:
        device_owner = session.scalar(select(CustomerIdentity.customer_id).where(
            CustomerIdentity.tenant_id == tenant_id,
            CustomerIdentity.kind == IdentityKind.device, CustomerIdentity.value == device_id))
        if device_owner is not None and _survivor(session, tenant_id, device_owner) == member:
            raise SelfReferral(reason=gettext(REASON_DEVICE))
    if holder is not None:
        holder_ids = profile_ids(session, tenant_id, holder)
        earlier = session.scalar(select(Referral).where(Referral.tenant_id == tenant_id,
                                                        Referral.friend_id.in_(holder_ids)))
        if earlier is not None:
            if earlier.referrer_id in member_ids and earlier.coupon_id:
                coupon = session.get(Coupon, (tenant_id, earlier.coupon_id))
                if coupon is not None:  # the same invitation opened again
                    visitor = identify_visitor(session, actor, phone_e164, device_id,
                                               source="referral", verified=verified)
                    return ReferralResult(earlier, coupon, visitor.customer_id,
                                          visitor.trusted, created=False)
            raise AlreadyReferred()
        bought = session.scalar(select(func.count()).select_from(Order).where(
            Order.tenant_id == tenant_id, Order.customer_id.in_(holder_ids)))
        if bought:
            raise NotNewCustomer()
    tenant = get_tenant(session, tenant_id)
    this_month = session.scalar(select(func.count()).select_from(Referral).where(
        Referral.tenant_id == tenant_id, Referral.referrer_id.in_(member_ids),
        Referral.created_at >= month_start(now, tenant.timezone)))
    if (this_month or 0) >= program.monthly_cap:
        raise ReferralCapReached(cap=program.monthly_cap)
    visitor = identify_visitor(session, actor, phone_e164, device_id, source="referral",
                               verified=verified)
    friend = _survivor(session, tenant_id, visitor.customer_id)
    claim = claims.issue_coupon(
        session, actor, program.welcome_campaign_id,
        session.get_one(Customer, (tenant_id, friend)), channel="referral",
        attribution=Attribution(utm_source="referral", utm_medium="member")
        .model_dump(exclude_none=True), now=now)
    referral = Referral(tenant_id=tenant_id, referrer_id=member, friend_id=friend,
                        code=row.code, coupon_id=claim.coupon.id, created_at=now,
                        qualify_by=now + timedelta(days=program.qualify_days))
    try:
        with session.begin_nested():
            session.add(referral)
            session.flush()
    except IntegrityError as error:  # referred concurrently by someone else's link
        raise AlreadyReferred() from error
    record_event(session, actor, client_event_id=f"referral_signup:{referral.id}",
                 type="referral_signup", channel="online", source="referral",
                 customer_id=friend, occurred_at=now,
                 properties={"referral_id": referral.id, "referrer_id": member,
                             "code": row.code})
    return ReferralResult(referral, claim.coupon, friend, visitor.trusted, created=True)


# A referral a purchase may still qualify: pending, or expired by the job while the
# purchase (made within the window) was on its way.
_OPEN = (ReferralStatus.pending, ReferralStatus.expired)


def window_open(qualify_by: datetime, at: datetime) -> bool:
    """Whether a store purchase at `at` is within the referral's window. The one rule that
    `qualify`, the expiry job (loops/jobs.py) and `shown_status` apply."""
    return as_utc(at) <= as_utc(qualify_by)


_MERGED_IN = aliased(Customer)
_REFERRALS = cast(Table, Referral.__table__)
# Prepared once: every store purchase of a known customer asks it. The open statuses are
# spelled out (`in_` would make an expanding parameter, which `Prepared` refuses).
_UNREFERRED = Prepared(select(
    Customer.merged_into_id,
    exists().where(_MERGED_IN.tenant_id == bindparam("tenant_id"),
                   _MERGED_IN.merged_into_id == bindparam("customer_id")),
    exists().where(_REFERRALS.c.tenant_id == bindparam("tenant_id"),
                   _REFERRALS.c.friend_id == bindparam("customer_id"),
                   or_(*(_REFERRALS.c.status == status for status in _OPEN))),
).where(Customer.tenant_id == bindparam("tenant_id"), Customer.id == bindparam("customer_id")))


def _surely_unreferred(session: Session, tenant_id: str, customer_id: str) -> bool:
    """True for a profile that is neither merged away nor merged into (its profiles are itself
    alone) and has no open referral: one statement of three index look-ups, which is all
    that most purchases need. Merged profiles take the full search in `qualify`."""
    row = _UNREFERRED.first(session, {"tenant_id": tenant_id, "customer_id": customer_id})
    return row is not None and row[0] is None and not row[1] and not row[2]


def qualify(session: Session, actor: Actor, customer_id: str, store_id: str | None,
            at: datetime, reference: str) -> Referral | None:
    """Called in the transaction that records a store purchase: the friend's pending
    referral qualifies, and both people are rewarded, exactly once."""
    tenant_id = actor.tenant_id
    if _surely_unreferred(session, tenant_id, customer_id):
        return None
    friend = _survivor(session, tenant_id, customer_id)
    # Expired ones too: the window is about when the friend bought, not when the purchase
    # reached us (an offline POS may send it after the expiry job ran).
    referral = session.scalar(select(Referral).where(
        Referral.tenant_id == tenant_id,
        Referral.friend_id.in_(profile_ids(session, tenant_id, friend)),
        Referral.status.in_(_OPEN)))
    if referral is None or as_utc(at) < as_utc(referral.created_at):
        return None  # a purchase from before the sign-up (an import of old orders) is no first
    if not window_open(referral.qualify_by, at):
        session.execute(update(Referral).where(
            Referral.tenant_id == tenant_id, Referral.id == referral.id,
            Referral.status == ReferralStatus.pending)
            .values(status=ReferralStatus.expired).execution_options(synchronize_session=False))
        return None
    changed = session.execute(
        update(Referral)
        .where(Referral.tenant_id == tenant_id, Referral.id == referral.id,
               Referral.status.in_(_OPEN))
        .values(status=ReferralStatus.qualified, qualified_at=at, qualified_by=reference[:64],
                store_id=store_id)
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None  # qualified meanwhile by a concurrent purchase: that one rewards
    session.expire(referral)
    program = get_program(session, tenant_id)
    loyalty = get_loyalty_program(session, tenant_id)
    expires = expiry_for(loyalty, at)
    for who, points, role in ((referral.referrer_id, program.referrer_points, "referrer"),
                              (referral.friend_id, program.friend_points, "friend")):
        if points > 0:
            credit(session, actor, _survivor(session, tenant_id, who), points, EntryKind.earn,
                   f"referral:{referral.id}:{role}",
                   Source(reason=f"referral reward ({role})", reference=referral.id),
                   expires_at=expires)
    return referral


def list_referrals(session: Session, actor: Actor, limit: int = 200) -> list[Referral]:
    actor.require(Permission.campaigns_read)
    return list(session.scalars(select(Referral).where(Referral.tenant_id == actor.tenant_id)
                                .order_by(Referral.created_at.desc()).limit(limit)))


def shown_status(referral: Referral, now: datetime | None = None) -> ReferralStatus:
    """Pending past its window reads as expired, also before the hourly job flipped it."""
    if (referral.status == ReferralStatus.pending
            and not window_open(referral.qualify_by, now or utcnow())):
        return ReferralStatus.expired
    return referral.status
