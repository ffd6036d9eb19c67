"""RFM: recency, frequency and monetary value per customer, scored 1–5 and named.

Definitions (DESIGN.md, "Metrics"; the grid below is this module's and docs/analytics.md's):

* the **inputs** come from orders, the truth for spend, of one brand, paid up to the end of
  the `as_of` day in the brand's time zone. An order refunded in full does not count; the
  others count once each, for what they brought in after refunds
  (`total_minor − refunded_minor`). Orders of profiles merged into another count for the
  survivor; erased profiles and walk-ins (no customer) are left out;
* **recency** = whole days from the last purchase to the end of the `as_of` day (0: bought
  that day), **frequency** = orders, **monetary** = net spend in minor units;
* each is **scored 1–5 by quintile**: a customer's score is 1 + the number of whole fifths
  of all scored customers that have a strictly worse value (more days since the last
  purchase, fewer orders, less spend). Equal values always get equal scores, so when half
  the customers bought once, all of them share F = 1 and the F scores above start higher;
* the **segment** comes from R and FM = (F + M) / 2 rounded half up, on the grid `GRID`.

Scoring reads one row per customer — from `customer_order_totals` (kept current by the order
and refund listeners) as of today, or from one `GROUP BY` over the orders for an earlier day —
and does the rest as array arithmetic in NumPy: no Python loop per customer or per order
(bench/bench_analytics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, ColumnElement, Executable, Integer, cast, func, select
from sqlalchemy.orm import QueryableAttribute, aliased

from omniloop.analytics.models import CustomerOrderTotal
from omniloop.core.db import Session
from omniloop.core.errors import N_, Forbidden
from omniloop.customers.models import Customer
from omniloop.orders.models import Order, OrderStatus
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant

IntArray = npt.NDArray[np.int64]
SmallArray = npt.NDArray[np.int8]

# The named segments, best first, with their labels (English msgids).
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("champions", N_("Champions")),
    ("loyal", N_("Loyal")),
    ("potential_loyalist", N_("Potential loyalist")),
    ("new", N_("New")),
    ("promising", N_("Promising")),
    ("need_attention", N_("Need attention")),
    ("about_to_sleep", N_("About to sleep")),
    ("at_risk", N_("At risk")),
    ("cant_lose", N_("Can't lose")),
    ("hibernating", N_("Hibernating")),
    ("lost", N_("Lost")),
)
SEGMENT_KEYS: tuple[str, ...] = tuple(key for key, _ in SEGMENTS)
SEGMENT_LABELS: dict[str, str] = dict(SEGMENTS)

# GRID[R - 1][FM - 1] = the segment. Rows: recency 1 (long ago) … 5 (recent); columns:
# frequency-and-money 1 … 5.
_GRID_NAMES: tuple[tuple[str, ...], ...] = (
    ("lost", "hibernating", "at_risk", "at_risk", "cant_lose"),                        # R 1
    ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),                 # R 2
    ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),          # R 3
    ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),       # R 4
    ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),     # R 5
)
GRID: npt.NDArray[np.int8] = np.array(
    [[SEGMENT_KEYS.index(name) for name in row] for row in _GRID_NAMES], dtype=np.int8)

SECONDS_PER_DAY = 86_400


def require_brand_wide(actor: Actor, permission: Permission = Permission.campaigns_read) -> None:
    """Customer analytics span every store, so they are for brand-wide staff (owner and
    marketer) and admin keys; a store-bound actor would see other stores' customers."""
    actor.require(permission)
    if actor.store_ids is not None:
        raise Forbidden()


def day_end_utc(as_of: date, timezone: str) -> datetime:
    """The first instant after the `as_of` day in the brand's time zone, in UTC."""
    local = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def epoch_seconds(session: Session,
                  column: ColumnElement[Any] | QueryableAttribute[Any]) -> ColumnElement[int]:
    """A timestamp column as whole seconds since 1970 in SQL, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)  # as SQLite: truncated


def quintile_scores(values: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> SmallArray:
    """1 + the whole fifths of all values that are strictly below each one (higher is better).

    One stable sort: in sorted order, the count of values below each one is the position
    where its run of equal values starts, so equal values get equal scores. (Looking each
    value up in the sorted array with `searchsorted` gives the same counts, 4–7× slower for a
    million spend or recency values: every look-up lands somewhere else in memory.)
    """
    n = values.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    run_starts = np.empty(n, dtype=bool)
    run_starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=run_starts[1:])
    below_in_order = np.maximum.accumulate(np.where(run_starts, np.arange(n), 0))
    below = np.empty(n, dtype=np.int64)
    below[order] = below_in_order
    scores: SmallArray = (1 + (5 * below) // n).astype(np.int8)
    return scores


def segment_of(r: SmallArray, f: SmallArray, m: SmallArray) -> SmallArray:
    """The segment index (into SEGMENT_KEYS) of each customer's scores."""
    fm = (f.astype(np.int16) + m + 1) // 2
    found: SmallArray = GRID[r - 1, fm - 1]
    return found


@dataclass(frozen=True)
class RfmInputs:
    """Per customer (survivor profile): what the scores are computed from."""

    customer_ids: list[str]
    recency_days: IntArray
    frequency: IntArray
    monetary_minor: IntArray


@dataclass(frozen=True)
class RfmScores:
    as_of: date
    customer_ids: list[str]
    recency_days: IntArray
    frequency: IntArray
    monetary_minor: IntArray
    r: SmallArray
    f: SmallArray
    m: SmallArray
    segment: SmallArray  # index into SEGMENT_KEYS

    def __len__(self) -> int:
        return len(self.customer_ids)

    def segment_counts(self) -> dict[str, int]:
        counts = np.bincount(self.segment.astype(np.int64), minlength=len(SEGMENT_KEYS))
        return {key: int(counts[i]) for i, key in enumerate(SEGMENT_KEYS)}

    def members(self, segment_keys: list[str] | set[str]) -> list[str]:
        wanted = np.isin(self.segment, [SEGMENT_KEYS.index(k) for k in segment_keys])
        return [self.customer_ids[i] for i in np.flatnonzero(wanted)]


def merged_and_erased(session: Session, tenant_id: str) -> tuple[dict[str, str], set[str]]:
    """Merged-away profile → its survivor (through chains), and the erased profiles."""
    merged: dict[str, str] = {
        cid: target for cid, target in session.execute(
            select(Customer.id, Customer.merged_into_id).where(
                Customer.tenant_id == tenant_id, Customer.merged_into_id.is_not(None)))
        if target is not None}
    erased = set(session.scalars(select(Customer.id).where(
        Customer.tenant_id == tenant_id, Customer.erased_at.is_not(None))))
    resolved: dict[str, str] = {}
    for start in merged:
        current, seen = start, set()
        while current in merged and current not in seen:
            seen.add(current)
            current = merged[current]
        resolved[start] = current
    return resolved, erased


def _fetch(session: Session, statement: Executable) -> list[Any]:
    """The DBAPI cursor's own tuples: one row per customer of a string and three integers,
    which SQLAlchemy's per-row `Result` handling would only copy (a third of the time for a
    million customers)."""
    result = session.connection().execute(statement)
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    return list(rows)


# Past the point where this share of a brand's orders was paid after the day, one GROUP BY
# over all orders (from the covering index, no table look-ups) beats subtracting them: at
# 3 M orders, a day 30 days back (4 % paid since) took 0.9 s this way against 1.1 s, 90 days
# back (12 %) the same as the GROUP BY (docs/benchmarks.md).
SUBTRACT_AT_MOST = 0.08


def _totals_as_of(session: Session, tenant_id: str, cutoff: datetime) -> list[Any] | None:
    """The totals' rows as they stood at `cutoff`: the current totals less the orders paid
    since, whose customers' last payment before `cutoff` is looked up customer by customer
    (index seeks). As of today nothing is subtracted. None when the orders had better be
    read whole, or when the totals and the orders disagree (then the orders are the truth).
    """
    paid_since = session.scalar(select(func.count()).select_from(Order).where(
        Order.tenant_id == tenant_id, Order.paid_at >= cutoff)) or 0
    if paid_since:
        counted = session.scalar(select(func.sum(CustomerOrderTotal.orders)).where(
            CustomerOrderTotal.tenant_id == tenant_id)) or 0
        if paid_since > SUBTRACT_AT_MOST * counted:
            return None
    rows = _fetch(session, select(
        CustomerOrderTotal.customer_id, CustomerOrderTotal.last_paid_epoch,
        CustomerOrderTotal.orders, CustomerOrderTotal.net_minor)
        .where(CustomerOrderTotal.tenant_id == tenant_id, CustomerOrderTotal.orders > 0))
    limit = int(cutoff.timestamp())
    if not rows or not paid_since:
        return rows  # nothing paid since the day: the totals stand as they were then
    earlier = aliased(Order)
    last_before = (select(epoch_seconds(session, func.max(earlier.paid_at)))
                   .where(earlier.tenant_id == tenant_id,
                          earlier.customer_id == Order.customer_id,
                          earlier.paid_at < cutoff, earlier.status != OrderStatus.refunded)
                   .scalar_subquery())
    since = _fetch(session, select(
        Order.customer_id, last_before, func.count(),
        cast(func.sum(Order.total_minor - Order.refunded_minor), BigInteger))
        .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None),
               Order.paid_at >= cutoff, Order.status != OrderStatus.refunded)
        .group_by(Order.customer_id))
    position = {row[0]: index for index, row in enumerate(rows)}
    adjusted = list(rows)
    for customer_id, last_epoch, orders, net_minor in since:
        index = position.get(customer_id)
        if index is None:
            return None
        _, _, total_orders, total_net = rows[index]
        adjusted[index] = (customer_id, last_epoch, total_orders - orders, total_net - net_minor)
    kept = [row for row in adjusted if row[2] > 0]
    if any(row[1] is None or row[1] >= limit for row in kept) or any(
            row[2] < 0 for row in adjusted):
        return None
    return kept


def rfm_inputs(session: Session, tenant_id: str, as_of: date, timezone: str, *,
               use_totals: bool = True) -> RfmInputs:
    """Recency, frequency and monetary per customer.

    From `customer_order_totals`, one row per customer kept current by the order and refund
    listeners (`analytics.totals`), less what was paid after the day when the day is in the
    past (`_totals_as_of`); when most orders came after the day, from one GROUP BY over the
    orders. All count the same orders the same way (tests/analytics/test_rfm.py checks them
    against each other).
    """
    cutoff = day_end_utc(as_of, timezone)
    rows = _totals_as_of(session, tenant_id, cutoff) if use_totals else None
    if rows is None:
        rows = _fetch(session, select(
            Order.customer_id, epoch_seconds(session, func.max(Order.paid_at)), func.count(),
            cast(func.sum(Order.total_minor - Order.refunded_minor), BigInteger))
            .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None),
                   Order.paid_at < cutoff, Order.status != OrderStatus.refunded)
            .group_by(Order.customer_id))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return RfmInputs([], empty, empty, empty)
    # One column at a time (`zip(*rows)` would pass a million tuples as arguments: 2.5 s
    # where this takes 0.4 s).
    ids: list[str] = list(map(itemgetter(0), rows))
    last_epoch, frequency, monetary = (
        np.fromiter(map(itemgetter(column), rows), dtype=np.int64, count=len(rows))
        for column in (1, 2, 3))

    merged, erased = merged_and_erased(session, tenant_id)
    if merged or erased:
        owners = [merged.get(i, i) for i in ids]
        keep = np.fromiter((o not in erased for o in owners), dtype=bool, count=len(owners))
        if not keep.all() or any(i in merged for i in ids):
            owner_array = np.asarray(owners, dtype=object)[keep]
            unique, inverse = np.unique(owner_array, return_inverse=True)
            n = unique.shape[0]
            frequency = np.bincount(inverse, weights=frequency[keep], minlength=n).astype(
                np.int64)
            monetary_sum = np.zeros(n, dtype=np.int64)
            np.add.at(monetary_sum, inverse, monetary[keep])
            monetary = monetary_sum
            latest = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(latest, inverse, last_epoch[keep])
            last_epoch = latest
            ids = [str(i) for i in unique]
    recency = (int(cutoff.timestamp()) - last_epoch) // SECONDS_PER_DAY
    return RfmInputs(customer_ids=ids, recency_days=recency, frequency=frequency,
                     monetary_minor=monetary)


def score(inputs: RfmInputs, as_of: date) -> RfmScores:
    """Quintile scores and segments for the inputs (fewer days since a purchase is better)."""
    r = quintile_scores(-inputs.recency_days)
    f = quintile_scores(inputs.frequency)
    m = quintile_scores(inputs.monetary_minor)
    segment = segment_of(r, f, m) if len(inputs.customer_ids) else np.zeros(0, np.int8)
    return RfmScores(as_of=as_of, customer_ids=inputs.customer_ids,
                     recency_days=inputs.recency_days, frequency=inputs.frequency,
                     monetary_minor=inputs.monetary_minor, r=r, f=f, m=m, segment=segment)


def score_customers(session: Session, actor: Actor, as_of: date) -> RfmScores:
    """The brand's RFM scores as of the end of `as_of`, a day in its time zone."""
    require_brand_wide(actor)
    tenant = get_tenant(session, actor.tenant_id)
    return score(rfm_inputs(session, actor.tenant_id, as_of, tenant.timezone), as_of)
