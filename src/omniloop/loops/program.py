"""The brand's loop programme: the referral offer and the feedback thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from omniloop.campaigns.service import get_campaign
from omniloop.core.db import Session, get_or_insert, unsaved
from omniloop.core.errors import N_
from omniloop.core.i18n import gettext
from omniloop.loops.errors import ProgramInvalid
from omniloop.loops.models import LoopProgram
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("loops.program", N_("Referral and feedback settings changed"))


def get_program(session: Session, tenant_id: str) -> LoopProgram:
    """The brand's settings: the stored row, or the defaults unsaved until someone saves
    settings, so reading them never writes (GET pages read them too)."""
    program = session.get(LoopProgram, tenant_id)
    if program is not None:
        return program
    return unsaved(LoopProgram, tenant_id=tenant_id)


def stored_program(session: Session, tenant_id: str) -> LoopProgram:
    """The settings row itself, written with the defaults if missing: for code that changes
    the settings (a GET reads `get_program`)."""
    return get_or_insert(session, LoopProgram, tenant_id=tenant_id)


@dataclass
class ProgramData:
    welcome_campaign_id: str | None
    make_good_campaign_id: str | None
    qualify_days: int = 30
    monthly_cap: int = 10
    referrer_points: int = 100
    friend_points: int = 50
    low_rating: int = 2
    low_nps: int = 6


def update_program(session: Session, actor: Actor, data: ProgramData) -> LoopProgram:
    actor.require(Permission.campaigns_manage)
    checks = (
        (1 <= data.qualify_days <= 365, N_("the qualifying window is 1 to 365 days.")),
        (0 <= data.monthly_cap <= 1000, N_("the monthly cap is 0 to 1,000 friends.")),
        (0 <= data.referrer_points <= 100_000 and 0 <= data.friend_points <= 100_000,
         N_("reward points are 0 to 100,000.")),
        (1 <= data.low_rating <= 5, N_("the low rating mark is 1 to 5.")),
        (0 <= data.low_nps <= 10, N_("the low recommendation mark is 0 to 10.")),
    )
    for ok, reason in checks:
        if not ok:
            raise ProgramInvalid(reason=gettext(reason))
    for campaign_id in (data.welcome_campaign_id, data.make_good_campaign_id):
        if campaign_id:
            get_campaign(session, actor, campaign_id)
    program = stored_program(session, actor.tenant_id)
    program.welcome_campaign_id = data.welcome_campaign_id or None
    program.make_good_campaign_id = data.make_good_campaign_id or None
    program.qualify_days = data.qualify_days
    program.monthly_cap = data.monthly_cap
    program.referrer_points = data.referrer_points
    program.friend_points = data.friend_points
    program.low_rating = data.low_rating
    program.low_nps = data.low_nps
    session.flush()
    audit.record(session, actor, "loops.program", "loop_program", actor.tenant_id,
                 {"welcome_campaign_id": program.welcome_campaign_id,
                  "qualify_days": program.qualify_days, "monthly_cap": program.monthly_cap})
    return program
