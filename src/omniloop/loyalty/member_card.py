"""The member card: a QR that rotates, so a screenshot of it is useless minutes later.

The wallet shows a `member` token (core.tokens, signed per brand) valid for
`MEMBER_TOKEN_SECONDS`; the page renews it before it runs out. Scanning it at the POS names
the customer, so an in-store purchase lands on the same profile as their online activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.tokens import TokenKind, sign_token, verify_token
from omniloop.customers.errors import CustomerNotFound, InvalidIdentity
from omniloop.customers.identities import mask_phone, normalize
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.profiles import get_customer, profile_ids
from omniloop.loyalty.errors import PosCardTaken
from omniloop.loyalty.ledger import balance_of
from omniloop.loyalty.models import PointsAccount
from omniloop.loyalty.program import get_program
from omniloop.loyalty.risk import RiskFlag, risk_of
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

MEMBER_TOKEN_SECONDS = 300

audit.register_action("customer.pos_card_bound", N_("POS card bound at the counter"))


def member_token(tenant_id: str, customer_id: str, *, now: datetime | None = None) -> str:
    expires = (now or utcnow()) + timedelta(seconds=MEMBER_TOKEN_SECONDS)
    return sign_token(tenant_id, TokenKind.MEMBER, customer_id, expires)


@dataclass(frozen=True)
class Member:
    customer: Customer
    phone: str | None
    balance: int
    tier_code: str | None
    tier_name: str | None
    point_value_minor: int
    risk: RiskFlag


def member_of(session: Session, actor: Actor, customer_id: str) -> Member:
    """What the counter may see of a member: name, masked phone, points and tier."""
    customer = get_customer(session, actor, customer_id)
    if customer.erased_at is not None:
        raise CustomerNotFound()
    program = get_program(session, actor.tenant_id)
    tier = session.scalar(select(PointsAccount.tier_code).where(
        PointsAccount.tenant_id == actor.tenant_id, PointsAccount.customer_id == customer.id))
    names = {t.get("code"): t.get("name") for t in program.tiers or []}
    phone = session.scalar(select(CustomerIdentity.value).where(
        CustomerIdentity.tenant_id == actor.tenant_id,
        CustomerIdentity.customer_id.in_(profile_ids(session, actor.tenant_id, customer.id)),
        CustomerIdentity.kind == IdentityKind.phone).order_by(CustomerIdentity.created_at))
    return Member(customer=customer, phone=mask_phone(phone) if phone else None,
                  balance=balance_of(session, actor.tenant_id, customer.id), tier_code=tier,
                  tier_name=names.get(tier) if tier else None,
                  point_value_minor=program.point_value_minor,
                  risk=risk_of(session, actor.tenant_id, customer.id))


def scan_member(session: Session, actor: Actor, token: str) -> Member:
    """The member a scanned card belongs to; an old, altered or foreign card is refused."""
    actor.require(Permission.pos_use)
    claims = verify_token(token.strip(), tenant_id=actor.tenant_id, kind=TokenKind.MEMBER)
    return member_of(session, actor, claims.subject_id)


def bind_pos_card(session: Session, actor: Actor, customer_id: str, card_number: str
                  ) -> CustomerIdentity:
    """Tie a POS card number to the member standing at the counter (identified by their
    member QR), so purchases rung up on the card land on their profile. A card already on
    another profile is refused: merging people is not the counter's decision."""
    actor.require(Permission.pos_use)
    customer = get_customer(session, actor, customer_id)
    try:
        value = normalize(IdentityKind.pos_card, card_number)
    except InvalidIdentity as exc:
        exc.field = "card_number"
        raise
    for _ in range(2):  # a second look if another counter bound the card meanwhile
        existing = session.scalar(select(CustomerIdentity).where(
            CustomerIdentity.tenant_id == actor.tenant_id,
            CustomerIdentity.kind == IdentityKind.pos_card, CustomerIdentity.value == value))
        if existing is not None:
            if existing.customer_id in profile_ids(session, actor.tenant_id, customer.id):
                return existing
            raise PosCardTaken(field="card_number")
        identity = CustomerIdentity(tenant_id=actor.tenant_id, customer_id=customer.id,
                                    kind=IdentityKind.pos_card, value=value, source="pos")
        try:
            with session.begin_nested():
                session.add(identity)
                session.flush()
            break
        except IntegrityError:
            continue
    else:
        raise PosCardTaken(field="card_number")
    audit.record(session, actor, "customer.pos_card_bound", "customer", customer.id,
                 {"identity_id": identity.id})
    return identity
