"""The brand's program settings, and the arithmetic of earning."""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple, TypeAlias

from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import utcnow
from omniloop.core.db import Session, get_or_insert, unsaved
from omniloop.core.errors import N_
from omniloop.loyalty.errors import TierCodesRepeat, TiersNeedBase, TierThresholdsRepeat
from omniloop.loyalty.models import LoyaltyProgram, Rounding
from omniloop.loyalty.schemas import ProgramIn
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("loyalty.program_update", N_("Loyalty program changed"))


def get_program(session: Session, tenant_id: str) -> LoyaltyProgram:
    """The brand's program: the stored row, or the defaults (1 point per NT$100, 1 point =
    NT$1, 12 months) unsaved until someone saves settings, so reading it never writes."""
    program = session.get(LoyaltyProgram, tenant_id)
    if program is not None:
        return program
    return default_program(tenant_id)


def default_program(tenant_id: str) -> LoyaltyProgram:
    """The settings of a brand that never saved its own, unsaved (for code that already
    knows no row is stored)."""
    return unsaved(LoyaltyProgram, tenant_id=tenant_id)


class EarnTerms(NamedTuple):
    """The program's settings that earning reads, as plain values."""

    enabled: bool
    earn_unit_minor: int
    earn_points: int
    rounding: Rounding
    expiry_months: int
    tiers: list[dict[str, Any]]


EARN_TERMS_FIELDS = EarnTerms._fields
# What the arithmetic of earning reads of a program: a `LoyaltyProgram`, or the `EarnTerms`
# that every order reads with one prepared statement (an ORM object per order costs more
# than the statement).
EarningRules: TypeAlias = LoyaltyProgram | EarnTerms


@cache
def default_terms() -> EarnTerms:
    """The earning settings of a brand that never saved its own: the columns' defaults, as
    `default_program` has them, made once (they are constants; read them, never change
    their tiers)."""
    program = default_program("")
    return EarnTerms(*(getattr(program, name) for name in EARN_TERMS_FIELDS))


def stored_program(session: Session, tenant_id: str) -> LoyaltyProgram:
    """The settings row itself, written with the defaults if missing: for code that changes
    the settings (a GET reads `get_program`)."""
    return get_or_insert(session, LoyaltyProgram, tenant_id=tenant_id)


def tier_multiplier_bp(program: EarningRules, tier_code: str | None) -> int:
    tiers: list[dict[str, Any]] = program.tiers or []
    for tier in tiers:
        if tier.get("code") == tier_code:
            return int(tier.get("multiplier_bp", 10000))
    return 10000


def points_for(program: EarningRules, amount_minor: int, multiplier_bp: int = 10000) -> int:
    """Points earned on `amount_minor`: whole units by the rounding rule, then the tier
    multiplier, rounded down (a multiplier never rounds a point into existence)."""
    if amount_minor <= 0 or program.earn_points <= 0:
        return 0
    unit = program.earn_unit_minor
    if program.rounding == Rounding.down:
        units = amount_minor // unit
    elif program.rounding == Rounding.up:
        units = -(-amount_minor // unit)
    else:
        units = (2 * amount_minor + unit) // (2 * unit)
    return units * program.earn_points * multiplier_bp // 10000


def update_program(session: Session, actor: Actor, data: ProgramIn) -> LoyaltyProgram:
    """Replace the program's settings (audited). New rates apply to what happens from now on:
    points already earned keep their amount and expiry. Customers in a tier that no longer
    exists earn at 1× until the next tier evaluation moves them."""
    actor.require(Permission.campaigns_manage)
    codes = [t.code for t in data.tiers]
    if len(set(codes)) != len(codes):
        raise TierCodesRepeat(field="tiers")
    thresholds = sorted(t.threshold_minor for t in data.tiers)
    if thresholds[0] != 0:
        raise TiersNeedBase(field="tiers")
    if len(set(thresholds)) != len(thresholds):
        raise TierThresholdsRepeat(field="tiers")
    for tier in data.tiers:
        if tier.birthday_campaign_id:
            get_campaign(session, actor, tier.birthday_campaign_id)  # 404 if not the brand's
    program = stored_program(session, actor.tenant_id)
    before = {name: getattr(program, name) for name in ProgramIn.model_fields}
    values = data.model_dump()
    values["tiers"] = sorted(values["tiers"], key=lambda t: t["threshold_minor"])
    for name, value in values.items():
        setattr(program, name, value)
    program.updated_at = utcnow()
    session.flush()
    changed = {name: values[name] for name in values if values[name] != before[name]}
    audit.record(session, actor, "loyalty.program_update", "loyalty_program", actor.tenant_id,
                 {"changed": changed})
    return program
