"""The brand's program settings, and the arithmetic of earning."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from omniloop.core.db import Session
from omniloop.loyalty.models import DEFAULT_TIERS, LoyaltyProgram, Rounding


def get_program(session: Session, tenant_id: str) -> LoyaltyProgram:
    """The brand's program; the defaults (1 point per NT$100, 1 point = NT$1, 12 months)
    are written the first time it is needed, so every brand has one."""
    program = session.get(LoyaltyProgram, tenant_id)
    if program is not None:
        return program
    try:
        with session.begin_nested():
            program = LoyaltyProgram(tenant_id=tenant_id, tiers=[dict(t) for t in DEFAULT_TIERS])
            session.add(program)
            session.flush()
    except IntegrityError:
        program = session.get(LoyaltyProgram, tenant_id)
        assert program is not None
    return program


def tier_multiplier_bp(program: LoyaltyProgram, tier_code: str | None) -> int:
    tiers: list[dict[str, Any]] = program.tiers or []
    for tier in tiers:
        if tier.get("code") == tier_code:
            return int(tier.get("multiplier_bp", 10000))
    return 10000


def points_for(program: LoyaltyProgram, amount_minor: int, multiplier_bp: int = 10000) -> int:
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
