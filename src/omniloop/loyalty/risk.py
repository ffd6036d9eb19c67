"""No-shows, penalty points, the risk score and the blacklist.

A booking or a reserved pickup the customer did not come for is marked by staff
(`mark_no_show`); the program may take penalty points for it (never below zero: the penalty
takes what there is). The **risk score** is the share of the "high risk" count reached by
no-shows within the program's window — with the defaults (2 within 90 days) one no-show
scores 50 ("watch") and two score 100 ("high"). A blacklist entry has a reason and an end
date; the program can put customers on it automatically after a number of no-shows.
`flags_for` answers, for any list of customers, who staff should be warned about: the
customer pages, search results and the POS show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.profiles import get_customer
from omniloop.loyalty.errors import (
    BlacklistEndInvalid,
    BlacklistNotFound,
    NoShowInFuture,
    NoShowNotFound,
    NoShowTaken,
    ReasonRequired,
)
from omniloop.loyalty.ledger import Source, credit, debit, expiry_for
from omniloop.loyalty.models import BlacklistEntry, EntryKind, NoShow, NoShowKind
from omniloop.loyalty.program import get_program
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import get_store

audit.register_action("customer.no_show", N_("No-show marked"))
audit.register_action("customer.no_show_cancel", N_("No-show cancelled"))
audit.register_action("customer.blacklist", N_("Customer blacklisted"))
audit.register_action("customer.blacklist_lift", N_("Blacklist lifted"))

MAX_BLACKLIST_DAYS = 5 * 366


class RiskLevel:
    none = "none"
    watch = "watch"
    high = "high"
    blacklisted = "blacklisted"


RISK_LABELS = {RiskLevel.watch: N_("Watch: recent no-show"),
               RiskLevel.high: N_("High risk: repeated no-shows"),
               RiskLevel.blacklisted: N_("Blacklisted")}


@dataclass(frozen=True)
class RiskFlag:
    level: str
    score: int  # 0–100
    no_shows: int  # within the program's window
    blacklisted_until: datetime | None = None
    blacklist_reason: str | None = None

    @property
    def label(self) -> str:
        return RISK_LABELS.get(self.level, "")


NO_RISK = RiskFlag(RiskLevel.none, 0, 0)


def flags_for(session: Session, tenant_id: str, customer_ids: list[str], *,
              now: datetime | None = None) -> dict[str, RiskFlag]:
    """Risk of each customer that has any (absent: no risk), in two indexed queries."""
    if not customer_ids:
        return {}
    now = now or utcnow()
    program = get_program(session, tenant_id)
    counts = dict(session.execute(
        select(NoShow.customer_id, func.count())
        .where(NoShow.tenant_id == tenant_id, NoShow.customer_id.in_(customer_ids),
               NoShow.cancelled_at.is_(None),
               NoShow.due_at > now - timedelta(days=program.risk_window_days))
        .group_by(NoShow.customer_id)).all())
    blacklisted = {row.customer_id: row for row in session.scalars(
        select(BlacklistEntry).where(
            BlacklistEntry.tenant_id == tenant_id, BlacklistEntry.customer_id.in_(customer_ids),
            BlacklistEntry.lifted_at.is_(None), BlacklistEntry.starts_at <= now,
            BlacklistEntry.ends_at > now)
        .order_by(BlacklistEntry.ends_at))}
    flags: dict[str, RiskFlag] = {}
    for customer_id in set(counts) | set(blacklisted):
        count = int(counts.get(customer_id, 0))
        score = min(100, 100 * count // program.high_risk_no_shows)
        entry = blacklisted.get(customer_id)
        if entry is not None:
            level = RiskLevel.blacklisted
        elif score >= 100:
            level = RiskLevel.high
        else:
            level = RiskLevel.watch if count else RiskLevel.none
        flags[customer_id] = RiskFlag(
            level, score, count, as_utc(entry.ends_at) if entry else None,
            entry.reason if entry else None)
    return flags


def risk_of(session: Session, tenant_id: str, customer_id: str, *,
            now: datetime | None = None) -> RiskFlag:
    return flags_for(session, tenant_id, [customer_id], now=now).get(customer_id, NO_RISK)


def mark_no_show(session: Session, actor: Actor, customer_id: str, *, kind: NoShowKind,
                 reference: str, due_at: datetime, store_id: str | None = None,
                 note: str = "", now: datetime | None = None) -> tuple[NoShow, bool]:
    """Record a no-show (once per booking/pickup reference), take the program's penalty
    points and blacklist when the program says so. Returns (no-show, created)."""
    actor.require(Permission.pos_use)
    now = now or utcnow()
    customer = get_customer(session, actor, customer_id)
    if store_id is not None:
        get_store(session, actor, store_id)
    due_at = as_utc(due_at)
    if due_at > now:
        raise NoShowInFuture(field="due_at")
    existing = session.scalar(select(NoShow).where(
        NoShow.tenant_id == actor.tenant_id, NoShow.kind == kind,
        NoShow.reference == reference))
    if existing is not None:
        if existing.customer_id != customer.id:
            raise NoShowTaken(reference=reference)
        return existing, False
    program = get_program(session, actor.tenant_id)
    try:
        with session.begin_nested():
            no_show = NoShow(tenant_id=actor.tenant_id, customer_id=customer.id, kind=kind,
                             reference=reference, store_id=store_id, due_at=due_at,
                             note=note.strip(), penalty_points=0, actor_label=actor.label,
                             created_at=now)
            session.add(no_show)
            session.flush()
    except IntegrityError:  # the same reference marked at the same moment
        existing = session.scalar(select(NoShow).where(
            NoShow.tenant_id == actor.tenant_id, NoShow.kind == kind,
            NoShow.reference == reference))
        if existing is None or existing.customer_id != customer.id:
            raise NoShowTaken(reference=reference) from None
        return existing, False
    if program.no_show_penalty_points > 0:
        entry = debit(session, actor, customer.id, program.no_show_penalty_points,
                      EntryKind.penalty, f"penalty:no-show:{no_show.id}",
                      Source(reason=f"no-show: {kind.value} {reference}",
                             reference=no_show.id), partial=True)
        no_show.penalty_points = -entry.points
    audit.record(session, actor, "customer.no_show", "customer", customer.id,
                 {"no_show_id": no_show.id, "kind": kind.value, "reference": reference,
                  "penalty_points": no_show.penalty_points})
    _auto_blacklist(session, actor, customer.id, now)
    session.flush()
    return no_show, True


def _auto_blacklist(session: Session, actor: Actor, customer_id: str, now: datetime) -> None:
    program = get_program(session, actor.tenant_id)
    if program.auto_blacklist_no_shows <= 0:
        return
    flag = risk_of(session, actor.tenant_id, customer_id, now=now)
    if flag.level == RiskLevel.blacklisted or flag.no_shows < program.auto_blacklist_no_shows:
        return
    entry = BlacklistEntry(
        tenant_id=actor.tenant_id, customer_id=customer_id,
        reason=f"{flag.no_shows} no-shows within {program.risk_window_days} days",
        starts_at=now, ends_at=now + timedelta(days=program.auto_blacklist_days),
        actor_label=actor.label, created_at=now)
    session.add(entry)
    session.flush()
    audit.record(session, actor, "customer.blacklist", "customer", customer_id,
                 {"entry_id": entry.id, "reason": entry.reason, "automatic": True,
                  "ends_at": entry.ends_at.isoformat()})


def cancel_no_show(session: Session, actor: Actor, no_show_id: str, *,
                   now: datetime | None = None) -> NoShow:
    """Take back a no-show marked by mistake, and give back the penalty points it took."""
    actor.require(Permission.pos_use)
    now = now or utcnow()
    no_show = session.get(NoShow, (actor.tenant_id, no_show_id))
    if no_show is None or (no_show.store_id is not None
                           and not actor.sees_store(no_show.store_id)):
        raise NoShowNotFound()
    if no_show.cancelled_at is not None:
        return no_show
    cancelled = session.execute(
        update(NoShow).where(NoShow.tenant_id == actor.tenant_id, NoShow.id == no_show_id,
                             NoShow.cancelled_at.is_(None))
        .values(cancelled_at=now, cancelled_by=actor.label)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.refresh(no_show)
    if cancelled != 1:
        return no_show
    if no_show.penalty_points > 0:
        program = get_program(session, actor.tenant_id)
        credit(session, actor, no_show.customer_id, no_show.penalty_points, EntryKind.adjust,
               f"penalty-return:no-show:{no_show.id}",
               Source(reason="no-show cancelled: penalty returned", reference=no_show.id),
               expires_at=expiry_for(program, now))
    audit.record(session, actor, "customer.no_show_cancel", "customer", no_show.customer_id,
                 {"no_show_id": no_show.id, "returned_points": no_show.penalty_points})
    return no_show


def no_shows_of(session: Session, tenant_id: str, customer_id: str,
                limit: int = 50) -> list[NoShow]:
    return list(session.scalars(
        select(NoShow).where(NoShow.tenant_id == tenant_id, NoShow.customer_id == customer_id)
        .order_by(NoShow.due_at.desc(), NoShow.id.desc()).limit(limit)))


def blacklist(session: Session, actor: Actor, customer_id: str, *, reason: str,
              ends_at: datetime, now: datetime | None = None) -> BlacklistEntry:
    """Put a customer on the blacklist until `ends_at` (required, within five years)."""
    actor.require(Permission.customers_merge)
    now = now or utcnow()
    customer = get_customer(session, actor, customer_id)
    if not reason.strip():
        raise ReasonRequired(field="reason")
    ends_at = as_utc(ends_at)
    if ends_at <= now or ends_at > now + timedelta(days=MAX_BLACKLIST_DAYS):
        raise BlacklistEndInvalid(field="ends_at")
    entry = BlacklistEntry(tenant_id=actor.tenant_id, customer_id=customer.id,
                           reason=reason.strip(), starts_at=now, ends_at=ends_at,
                           actor_label=actor.label, created_at=now)
    session.add(entry)
    session.flush()
    audit.record(session, actor, "customer.blacklist", "customer", customer.id,
                 {"entry_id": entry.id, "reason": entry.reason,
                  "ends_at": ends_at.isoformat()})
    return entry


def lift_blacklist(session: Session, actor: Actor, entry_id: str, *,
                   now: datetime | None = None) -> BlacklistEntry:
    actor.require(Permission.customers_merge)
    entry = session.get(BlacklistEntry, (actor.tenant_id, entry_id))
    if entry is None:
        raise BlacklistNotFound()
    if entry.lifted_at is None:
        entry.lifted_at = now or utcnow()
        entry.lifted_by = actor.label
        session.flush()
        audit.record(session, actor, "customer.blacklist_lift", "customer", entry.customer_id,
                     {"entry_id": entry.id})
    return entry


def blacklist_of(session: Session, tenant_id: str, customer_id: str) -> list[BlacklistEntry]:
    return list(session.scalars(
        select(BlacklistEntry).where(BlacklistEntry.tenant_id == tenant_id,
                                     BlacklistEntry.customer_id == customer_id)
        .order_by(BlacklistEntry.created_at.desc())))
