"""The points ledger: credit and debit, exactly once, never below zero.

Every change follows the same steps, in this order, inside a savepoint:

1. the idempotency key: an entry with it already exists → return that entry (a retry);
2. lock the account row (an UPDATE), so concurrent changes for one customer queue on
   PostgreSQL and are serialised by the write lock on SQLite;
3. move the balance with a conditional UPDATE that keeps it ≥ 0;
4. take debits out of open lots, oldest expiry first (a preferred lot first, for reversals);
5. insert the entry; a concurrent retry with the same key fails on the unique key here, and
   gets the first entry back.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, NoResultFound

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session, stored
from omniloop.core.errors import N_
from omniloop.core.ids import new_id
from omniloop.core.prepared import Prepared
from omniloop.loyalty.errors import (
    BelowMinimumRedemption,
    InsufficientPoints,
    PointsInvalid,
    ReasonRequired,
    RedeemShareExceeded,
)
from omniloop.loyalty.models import EntryKind, PointsAccount, PointsEntry
from omniloop.loyalty.program import EarningRules, get_program
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("points.adjust", N_("Points adjusted"))

MAX_POINTS = 100_000_000


@dataclass(frozen=True)
class Source:
    """What an entry is about: its reason and the order, refund or reference behind it."""

    reason: str = ""
    order_id: str | None = None
    refund_id: str | None = None
    reference: str | None = None


def expiry_for(program: EarningRules, earned_at: datetime) -> datetime | None:
    if program.expiry_months <= 0:
        return None
    return add_months(as_utc(earned_at), program.expiry_months)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later, or the month's last day (Jan 31 + 1 month → Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def find_entry(session: Session, tenant_id: str, key: str) -> PointsEntry | None:
    return session.scalar(select(PointsEntry).where(PointsEntry.tenant_id == tenant_id,
                                                    PointsEntry.idempotency_key == key))


def balance_of(session: Session, tenant_id: str, customer_id: str) -> int:
    """O(1): the account's running balance (tests check it against the ledger)."""
    balance = session.scalar(select(PointsAccount.balance).where(
        PointsAccount.tenant_id == tenant_id, PointsAccount.customer_id == customer_id))
    return int(balance or 0)


def _lock_account(session: Session, tenant_id: str, customer_id: str) -> int:
    """Create the account if needed, lock its row, and return the balance."""
    locked = session.execute(
        update(PointsAccount)
        .where(PointsAccount.tenant_id == tenant_id, PointsAccount.customer_id == customer_id)
        .values(updated_at=utcnow())
        .returning(PointsAccount.balance)
        .execution_options(synchronize_session=False)).first()
    if locked is not None:
        return int(locked[0])
    try:
        with session.begin_nested():
            session.execute(insert(PointsAccount).values(
                tenant_id=tenant_id, customer_id=customer_id, balance=0, lifetime_earned=0,
                updated_at=utcnow()))
    except IntegrityError:
        pass  # created concurrently: lock the one that exists
    return _lock_account(session, tenant_id, customer_id)


def _write(session: Session, entry: PointsEntry) -> PointsEntry:
    session.add(entry)
    session.flush()
    return entry


# credit() runs for every order that earns: its statements are prepared once (building an
# ORM query, flushing the unit of work or even SQLAlchemy's execution of a cached Core
# statement costs more than SQLite takes to run them).
_ACCOUNTS = cast(Table, PointsAccount.__table__)
_ENTRIES = cast(Table, PointsEntry.__table__)
_ENTRY_COLUMNS = tuple(column.key for column in _ENTRIES.columns)
_ENTRY_WITH_KEY = Prepared(select(_ENTRIES.c.id).where(
    _ENTRIES.c.tenant_id == bindparam("tenant_id"),
    _ENTRIES.c.idempotency_key == bindparam("key")))
# Locks the account row and moves the balance in one statement (the lock and the move of
# `_lock_account` + the balance UPDATE below, for a credit, which cannot go below zero).
_CREDIT_ACCOUNT = Prepared(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.tenant_id == bindparam("a_tenant_id"),
           _ACCOUNTS.c.customer_id == bindparam("a_customer_id"))
    .values(balance=_ACCOUNTS.c.balance + bindparam("a_points"),
            lifetime_earned=_ACCOUNTS.c.lifetime_earned + bindparam("a_earned"),
            updated_at=bindparam("a_now"))
    .returning(_ACCOUNTS.c.balance))
_INSERT_ENTRY = Prepared(insert(_ENTRIES), columns=_ENTRY_COLUMNS)


def _new_account_insert(module: ModuleType) -> Prepared:
    """INSERT of a new account that does nothing when it exists (created concurrently)."""
    return Prepared(module.insert(_ACCOUNTS)
                    .on_conflict_do_nothing(index_elements=["tenant_id", "customer_id"])
                    .returning(_ACCOUNTS.c.balance),
                    columns=("tenant_id", "customer_id", "balance", "lifetime_earned",
                             "updated_at"))


_NEW_ACCOUNT = {"postgresql": _new_account_insert(postgresql),
                "sqlite": _new_account_insert(sqlite)}


def credit(session: Session, actor: Actor, customer_id: str, points: int, kind: EntryKind,
           key: str, source: Source, *, expires_at: datetime | None) -> PointsEntry:
    """Add `points` as a new lot that expires at `expires_at` (`credit_entry`), and answer
    the entry: the one written, joined to the session as stored, or the key's earlier one."""
    entry_id, values = credit_entry(session, actor, customer_id, points, kind, key, source,
                                    expires_at=expires_at)
    if values is None:
        existing = find_entry(session, actor.tenant_id, key)
        assert existing is not None  # the same transaction just read it
        return existing
    # The row is exactly these values: it joins the session as stored, unread.
    entry = stored(PointsEntry, values)
    session.add(entry)
    return entry


def credit_entry(session: Session, actor: Actor, customer_id: str, points: int,
                 kind: EntryKind, key: str, source: Source, *, expires_at: datetime | None,
                 key_checked: bool = False) -> tuple[str, dict[str, Any] | None]:
    """`credit` without an ORM object, for the hot path (every order that earns): the
    entry's id, and the values written, or None when the key's entry existed already.
    `key_checked`: the caller has just read, in this transaction and after flushing, that
    no entry has the key (in a statement it ran anyway): step 1 is skipped.

    The steps of the module docstring in prepared Core statements: the key's look-up, the
    account locked and credited by one conditional UPDATE (or created with the points when
    it does not exist yet), the entry inserted. On PostgreSQL all of it runs in a savepoint,
    so a concurrent retry that loses the race on the key leaves nothing and gets the first
    entry. SQLite cannot race: its write transaction holds the one write lock from the first
    statement, so the key's look-up and the INSERT see the same ledger (no savepoint there,
    as in identify).
    """
    session.flush()  # the Core statements below must see the caller's pending ORM changes
    tenant_id = actor.tenant_id
    if not key_checked:
        found = _ENTRY_WITH_KEY.first(session, {"tenant_id": tenant_id, "key": key})
        if found is not None:
            return found[0], None
    dialect = session.connection().dialect.name
    racing = dialect != "sqlite"
    try:
        with session.begin_nested() if racing else nullcontext():
            now = utcnow()
            earned = points if kind == EntryKind.earn else 0
            moved = {"a_tenant_id": tenant_id, "a_customer_id": customer_id,
                     "a_points": points, "a_earned": earned, "a_now": now}
            balance = _CREDIT_ACCOUNT.scalar(session, moved)
            if balance is None:
                balance = _NEW_ACCOUNT.get(dialect, _NEW_ACCOUNT["sqlite"]).scalar(
                    session, {"tenant_id": tenant_id, "customer_id": customer_id,
                              "balance": points, "lifetime_earned": earned, "updated_at": now})
            if balance is None:  # created concurrently meanwhile: credit the one that exists
                balance = _CREDIT_ACCOUNT.scalar(session, moved)
                if balance is None:
                    raise NoResultFound("no points account to credit")
            values: dict[str, Any] = {
                "tenant_id": tenant_id, "id": new_id(), "customer_id": customer_id,
                "kind": kind, "points": points, "balance_after": balance,
                "reason": source.reason, "order_id": source.order_id,
                "refund_id": source.refund_id, "reference": source.reference,
                "actor_label": actor.label, "idempotency_key": key, "remaining": points,
                "lot_open": True, "expires_at": expires_at, "unrecovered": 0,
                "created_at": now}
            _INSERT_ENTRY.run(session, values)
    except IntegrityError:
        if not racing:
            raise
        found = _ENTRY_WITH_KEY.first(session, {"tenant_id": tenant_id, "key": key})
        if found is None:
            raise
        return found[0], None
    return values["id"], values


def _open_lots(session: Session, tenant_id: str, customer_id: str,
               preferred_lots: Sequence[str]) -> list[PointsEntry]:
    lots = list(session.scalars(
        select(PointsEntry)
        .where(PointsEntry.tenant_id == tenant_id, PointsEntry.customer_id == customer_id,
               PointsEntry.lot_open.is_(True))
        .order_by(case((PointsEntry.expires_at.is_(None), 1), else_=0),
                  PointsEntry.expires_at, PointsEntry.id)))
    if preferred_lots:
        preferred = set(preferred_lots)
        lots.sort(key=lambda lot: lot.id not in preferred)  # stable: oldest first within
    return lots


def _consume(session: Session, lots: list[PointsEntry], points: int) -> None:
    left = points
    for lot in lots:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        lot.lot_open = lot.remaining > 0
        left -= take
    if left > 0:  # the balance said there was enough: the lots must agree
        raise AssertionError("points lots do not add up to the balance")
    session.flush()


def debit(session: Session, actor: Actor, customer_id: str, points: int, kind: EntryKind,
          key: str, source: Source, *, partial: bool = False,
          preferred_lots: Sequence[str] = ()) -> PointsEntry:
    """Take `points` out of the balance, oldest lots first.

    `partial`: take what there is and record the rest as `unrecovered` (refund reversals of
    points already spent); otherwise refuse with InsufficientPoints and change nothing.
    `preferred_lots` are taken from first (a reversal takes its order's own lot).
    """
    existing = find_entry(session, actor.tenant_id, key)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            balance = _lock_account(session, actor.tenant_id, customer_id)
            take = min(points, balance) if partial else points
            if take > balance:
                raise InsufficientPoints(balance=balance, points=points)
            after = session.execute(
                update(PointsAccount)
                .where(PointsAccount.tenant_id == actor.tenant_id,
                       PointsAccount.customer_id == customer_id,
                       PointsAccount.balance >= take)
                .values(balance=PointsAccount.balance - take)
                .returning(PointsAccount.balance)
                .execution_options(synchronize_session=False)).scalar_one_or_none()
            if after is None:
                raise InsufficientPoints(balance=balance, points=points)
            _consume(session, _open_lots(session, actor.tenant_id, customer_id, preferred_lots),
                     take)
            return _write(session, PointsEntry(
                tenant_id=actor.tenant_id, customer_id=customer_id, kind=kind, points=-take,
                balance_after=after, reason=source.reason, order_id=source.order_id,
                refund_id=source.refund_id, reference=source.reference,
                actor_label=actor.label, idempotency_key=key, remaining=0, lot_open=False,
                unrecovered=points - take))
    except IntegrityError:
        existing = find_entry(session, actor.tenant_id, key)
        if existing is None:
            raise
        return existing


def _require_points(points: int) -> None:
    if not isinstance(points, int) or points <= 0 or points > MAX_POINTS:
        raise PointsInvalid(field="points")


@dataclass(frozen=True)
class PointsRedemption:
    entry: PointsEntry
    discount_minor: int
    replayed: bool


def redeem_points(session: Session, actor: Actor, customer_id: str, points: int, *,
                  order_total_minor: int, key: str, reference: str | None = None
                  ) -> PointsRedemption:
    """Spend points as a discount on an order, within the program's share and minimum."""
    actor.require(Permission.pos_use)
    _require_points(points)
    program = get_program(session, actor.tenant_id)
    existing = find_entry(session, actor.tenant_id, key)
    if existing is not None:
        return PointsRedemption(existing, -existing.points * program.point_value_minor, True)
    if points < program.min_redeem_points:
        raise BelowMinimumRedemption(minimum=program.min_redeem_points)
    allowed_minor = order_total_minor * program.max_redeem_share_bp // 10000
    allowed_points = allowed_minor // program.point_value_minor
    if points > allowed_points:
        raise RedeemShareExceeded(share=program.max_redeem_share_bp / 100,
                                  points=allowed_points)
    entry = debit(session, actor, customer_id, points, EntryKind.redeem, key,
                  Source(reason="redeemed at the POS", reference=reference))
    return PointsRedemption(entry, points * program.point_value_minor, False)


def adjust_points(session: Session, actor: Actor, customer_id: str, points: int, reason: str,
                  *, key: str) -> PointsEntry:
    """A manual correction by staff, up or down, always with a reason (audited)."""
    actor.require(Permission.customers_write)
    if not reason.strip():
        raise ReasonRequired(field="reason")
    if points == 0 or abs(points) > MAX_POINTS:
        raise PointsInvalid(field="points")
    source = Source(reason=reason.strip())
    if points > 0:
        program = get_program(session, actor.tenant_id)
        entry = credit(session, actor, customer_id, points, EntryKind.adjust, key, source,
                       expires_at=expiry_for(program, utcnow()))
    else:
        entry = debit(session, actor, customer_id, -points, EntryKind.adjust, key, source)
    audit.record(session, actor, "points.adjust", "customer", customer_id,
                 {"points": points, "reason": reason.strip(), "entry_id": entry.id})
    return entry


def expire_due(session: Session, actor: Actor, *, now: datetime | None = None,
               limit: int = 10_000) -> int:
    """Expire every open lot whose time has come, oldest first; returns entries written.

    Idempotent per lot (`expire:<lot id>`), so a job that stops half-way can simply run again.
    """
    now = now or utcnow()
    due = session.execute(
        select(PointsEntry.id, PointsEntry.customer_id)
        .where(PointsEntry.tenant_id == actor.tenant_id, PointsEntry.lot_open.is_(True),
               PointsEntry.expires_at <= now)
        .order_by(PointsEntry.expires_at, PointsEntry.id).limit(limit)).all()
    written = 0
    for lot_id, customer_id in due:
        # Read what is left of the lot under the account's lock: a redemption may have
        # taken from it since the list was read.
        _lock_account(session, actor.tenant_id, customer_id)
        lot = session.get(PointsEntry, (actor.tenant_id, lot_id))
        assert lot is not None
        session.refresh(lot)
        if not lot.lot_open or lot.remaining <= 0:
            continue
        debit(session, actor, customer_id, lot.remaining, EntryKind.expire, f"expire:{lot.id}",
              Source(reason="expired", reference=lot.id), partial=True, preferred_lots=[lot.id])
        written += 1
    return written


def expiring_soon(session: Session, tenant_id: str, *, within_days: int = 30,
                  now: datetime | None = None,
                  customer_id: str | None = None) -> list[tuple[str, int, datetime]]:
    """(customer, points, first expiry) for points expiring within `within_days`: who to
    remind (messaging reads this)."""
    now = now or utcnow()
    query = (select(PointsEntry.customer_id, func.sum(PointsEntry.remaining),
                    func.min(PointsEntry.expires_at))
             .where(PointsEntry.tenant_id == tenant_id, PointsEntry.lot_open.is_(True),
                    PointsEntry.expires_at > now,
                    PointsEntry.expires_at <= now + timedelta(days=within_days)))
    if customer_id is not None:
        query = query.where(PointsEntry.customer_id == customer_id)
    rows = session.execute(
        query.group_by(PointsEntry.customer_id).order_by(PointsEntry.customer_id)).all()
    return [(customer, int(points), as_utc(first)) for customer, points, first in rows
            if first is not None]


def history(session: Session, tenant_id: str, customer_id: str,
            limit: int = 200) -> list[PointsEntry]:
    return list(session.scalars(
        select(PointsEntry).where(PointsEntry.tenant_id == tenant_id,
                                  PointsEntry.customer_id == customer_id)
        .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc()).limit(limit)))
