"""The periodic scan for journey triggers that come with the passing of time.

Nothing happens at the moment a coupon is three days from its end or a customer's last visit
turns sixty days old, so these triggers are found by looking: `scan_due_triggers` runs one
query per trigger and journey over the whole brand (never one per customer: brands have
100,000+ members) and enters everyone found into the journey in bulk. Each query leaves out
who already entered for the same occurrence, and the insert skips a run that a concurrent
scan wrote first (the unique `(journey, occurrence)`), so the scan is idempotent: running it
twice, or every hour, enters nobody twice.

* `birthday`: the birthday is today in the brand's time zone (29 February: the 28th in other
  years); once per customer and year.
* `coupon_expiring`: a claimed, unredeemed coupon whose validity ends within 3 days; once per
  coupon.
* `points_expiring`: open points lots expiring within 30 days
  (`loyalty.ledger.expiring_soon`); once per customer and date of the first expiry.
* `no_visit`: the last order is 60 or more days old; once per last order, so a customer who
  comes back and lapses again enters again.

Merged-away and erased profiles are left out; orders and coupons of a profile merged into
another count for the one it was merged into (one level of merges).

The worker runs `scan_where_due` every hour, which scans each brand whose local hour is
`SCAN_HOUR` (after the loyalty daily job has expired the day's points);
`omniloop journeys scan` runs it by hand.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, exists, extract, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from omniloop.campaigns.models import Coupon, CouponStatus
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session, get_database
from omniloop.core.ids import new_ids
from omniloop.customers.models import Customer
from omniloop.loyalty.ledger import expiring_soon
from omniloop.messaging.journeys import SCANNED_TRIGGERS
from omniloop.messaging.models import Journey, JourneyRun, JourneyRunStatus
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor, Permission, system_actor
from omniloop.tenancy.tenants import get_tenant, list_tenants

SCAN_HOUR = 4  # local time: after the loyalty daily job (03:00)
COUPON_DAYS = 3
POINTS_DAYS = 30
NO_VISIT_DAYS = 60
INSERT_CHUNK = 500
JOB_ACTOR = "journey scan"

log = logging.getLogger("omniloop.messaging")

Rows = Sequence[tuple[str, str]]  # (customer id, occurrence)
_RUNS = JourneyRun.__table__


def _not_entered(tenant_id: str, journey_id: str,
                 occurrence: ColumnElement[str]) -> ColumnElement[bool]:
    return ~exists().where(JourneyRun.tenant_id == tenant_id,
                           JourneyRun.journey_id == journey_id,
                           JourneyRun.occurrence == occurrence)


def _prefix(text: str) -> ColumnElement[str]:
    return literal(text, String)


def _birthdays(session: Session, tenant_id: str, journey_id: str, now: datetime,
               local: datetime) -> Rows:
    days = [(local.month, local.day)]
    if (local.month, local.day) == (2, 28) and not calendar.isleap(local.year):
        days.append((2, 29))
    occurrence = _prefix(f"birthday:{local.year}:") + Customer.id
    return [(str(customer), str(occurrence)) for customer, occurrence in session.execute(
        select(Customer.id, occurrence).where(
            Customer.tenant_id == tenant_id, Customer.birthday.is_not(None),
            Customer.merged_into_id.is_(None), Customer.erased_at.is_(None),
            or_(*(and_(extract("month", Customer.birthday) == month,
                       extract("day", Customer.birthday) == day) for month, day in days)),
            _not_entered(tenant_id, journey_id, occurrence)))]


def _coupons_expiring(session: Session, tenant_id: str, journey_id: str, now: datetime,
                      local: datetime) -> Rows:
    owner = func.coalesce(Customer.merged_into_id, Customer.id)
    occurrence = _prefix("coupon_expiring:") + Coupon.id
    return [(str(customer), str(occurrence)) for customer, occurrence in session.execute(
        select(owner, occurrence).select_from(Coupon)
        .join(Customer, (Customer.tenant_id == Coupon.tenant_id)
              & (Customer.id == Coupon.customer_id))
        .where(Coupon.tenant_id == tenant_id, Coupon.status == CouponStatus.claimed,
               Coupon.valid_until > now,
               Coupon.valid_until <= now + timedelta(days=COUPON_DAYS),
               Customer.erased_at.is_(None),
               _not_entered(tenant_id, journey_id, occurrence)))]


def _points_expiring(session: Session, tenant_id: str, journey_id: str, now: datetime,
                     local: datetime) -> Rows:
    # One grouped query for the brand (the loyalty module's); bounded by who has points
    # expiring this month. Who entered already is skipped by the insert.
    timezone = str(local.tzinfo)
    return [(customer, f"points_expiring:{customer}:{to_local(first, timezone).date()}")
            for customer, _, first in expiring_soon(session, tenant_id,
                                                    within_days=POINTS_DAYS, now=now)]


def _no_visit(session: Session, tenant_id: str, journey_id: str, now: datetime,
              local: datetime) -> Rows:
    profile = aliased(Customer)
    owner = func.coalesce(profile.merged_into_id, Order.customer_id)
    ranked = (select(owner.label("customer_id"), Order.id.label("order_id"),
                     Order.paid_at.label("paid_at"),
                     func.row_number().over(partition_by=owner,
                                            order_by=(Order.paid_at.desc(), Order.id.desc()))
                     .label("rank"))
              .select_from(Order)
              .join(profile, (profile.tenant_id == Order.tenant_id)
                    & (profile.id == Order.customer_id))
              .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None))
              .subquery())
    occurrence = _prefix("no_visit:") + ranked.c.order_id
    return [(str(customer), str(occurrence)) for customer, occurrence in session.execute(
        select(ranked.c.customer_id, occurrence)
        .join(Customer, (Customer.tenant_id == tenant_id)
              & (Customer.id == ranked.c.customer_id))
        .where(ranked.c.rank == 1,
               ranked.c.paid_at <= now - timedelta(days=NO_VISIT_DAYS),
               Customer.merged_into_id.is_(None), Customer.erased_at.is_(None),
               _not_entered(tenant_id, journey_id, occurrence)))]


_FINDERS: dict[str, Callable[[Session, str, str, datetime, datetime], Rows]] = {
    "birthday": _birthdays, "coupon_expiring": _coupons_expiring,
    "points_expiring": _points_expiring, "no_visit": _no_visit,
}
assert set(_FINDERS) == set(SCANNED_TRIGGERS)


def _enter_all(session: Session, journey: Journey, rows: Rows, now: datetime) -> int:
    """Insert a waiting run per row; a row whose occurrence entered already (a concurrent
    scan) is skipped by the unique key. Answers how many entered."""
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    due = now + timedelta(minutes=journey.wait_minutes)
    entry = [{"step": "enter", "outcome": journey.trigger, "at": now.isoformat()}]
    entered = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        values = [{"tenant_id": journey.tenant_id, "id": run_id, "journey_id": journey.id,
                   "customer_id": customer_id, "occurrence": occurrence[:100],
                   "status": JourneyRunStatus.waiting, "due_at": due, "log": entry,
                   "created_at": now, "finished_at": None}
                  for run_id, (customer_id, occurrence) in zip(new_ids(len(chunk)), chunk,
                                                               strict=True)]
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT with RETURNING.
        statement = (module.insert(_RUNS).values(values)
                     .on_conflict_do_nothing(index_elements=["tenant_id", "journey_id",
                                                             "occurrence"])
                     .returning(_RUNS.c.id))
        entered += len(session.execute(statement).all())
    return entered


def scan_due_triggers(session: Session, actor: Actor, *, now: datetime | None = None
                      ) -> dict[str, int]:
    """Enter everyone a time-based trigger has come for into the brand's active journeys
    of that trigger. Idempotent. Answers how many entered, per trigger."""
    actor.require(Permission.campaigns_manage)
    now = now or utcnow()
    local = now.astimezone(ZoneInfo(get_tenant(session, actor.tenant_id).timezone))
    entered = dict.fromkeys(SCANNED_TRIGGERS, 0)
    for journey in session.scalars(select(Journey).where(
            Journey.tenant_id == actor.tenant_id, Journey.active.is_(True),
            Journey.trigger.in_(SCANNED_TRIGGERS)).order_by(Journey.created_at)):
        rows = _FINDERS[journey.trigger](session, actor.tenant_id, journey.id, now, local)
        entered[journey.trigger] += _enter_all(session, journey, rows, now)
    return entered


def scan_where_due(*, now: datetime | None = None) -> list[str]:
    """Scan each brand whose local hour is SCAN_HOUR, each in its own transaction (one
    brand's failure is logged and does not stop the others); returns the slugs scanned.
    Called hourly by the worker."""
    now = now or utcnow()
    with get_database().unit_of_work(write=False) as session:
        due = [(t.id, t.slug) for t in list_tenants(session)
               if now.astimezone(ZoneInfo(t.timezone)).hour == SCAN_HOUR]
    done = []
    for tenant_id, slug in due:
        try:
            with get_database().unit_of_work() as session:
                entered = scan_due_triggers(session, system_actor(tenant_id, JOB_ACTOR),
                                            now=now)
        except Exception:  # noqa: BLE001 - logged; the next day's scan catches up
            log.exception("journey scan failed for %s", slug)
            continue
        if any(entered.values()):
            log.info("journey scan %s: %s", slug,
                     ", ".join(f"{k} {v}" for k, v in entered.items() if v))
        done.append(slug)
    return done
