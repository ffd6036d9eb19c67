"""The daily loyalty job: expire due points, re-evaluate tiers, give birthday coupons.

Each step is idempotent (per-lot expiry keys, tier moves only on a change, one birthday
reward per customer and year), so running the job twice, or again after it stopped half-way,
does no harm. `omniloop loyalty daily` runs it for every brand at once; the worker runs
`run_daily_where_due` every hour, which runs it for each brand whose local time is
`DAILY_HOUR` (03:00), so every brand's day turns over at night in its own time zone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from omniloop.core.clock import utcnow
from omniloop.core.db import Session, get_database
from omniloop.loyalty.ledger import expire_due
from omniloop.loyalty.tiers import (
    BirthdayRun,
    TierEvaluation,
    evaluate_tiers,
    issue_birthday_coupons,
)
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.tenants import list_tenants

EXPIRY_BATCH = 10_000
DAILY_HOUR = 3  # local time: after closing, before opening
JOB_ACTOR = "loyalty daily job"

log = logging.getLogger("omniloop.loyalty")


@dataclass(frozen=True)
class DailyRun:
    expired_lots: int
    tiers: TierEvaluation
    birthdays: BirthdayRun


def run_daily(session: Session, actor: Actor, *, now: datetime | None = None) -> DailyRun:
    now = now or utcnow()
    expired = 0
    while batch := expire_due(session, actor, now=now, limit=EXPIRY_BATCH):
        expired += batch
    return DailyRun(expired_lots=expired, tiers=evaluate_tiers(session, actor, now=now),
                    birthdays=issue_birthday_coupons(session, actor, now=now))


def run_daily_where_due(*, now: datetime | None = None) -> list[str]:
    """Run the daily job for each brand whose local hour is DAILY_HOUR, each brand in its
    own transaction (one brand's failure is logged and does not stop the others); returns
    the slugs it ran for. Called hourly by the worker."""
    now = now or utcnow()
    with get_database().unit_of_work(write=False) as session:
        due = [(t.id, t.slug) for t in list_tenants(session)
               if now.astimezone(ZoneInfo(t.timezone)).hour == DAILY_HOUR]
    done = []
    for tenant_id, slug in due:
        try:
            with get_database().unit_of_work() as session:
                run = run_daily(session, system_actor(tenant_id, JOB_ACTOR), now=now)
        except Exception:  # noqa: BLE001 - logged; the next day's run catches up
            log.exception("loyalty daily job failed for %s", slug)
            continue
        log.info("loyalty daily %s: %d lots expired, %d up, %d down, %d birthday coupons",
                 slug, run.expired_lots, run.tiers.upgraded, run.tiers.downgraded,
                 run.birthdays.issued)
        done.append(slug)
    return done
