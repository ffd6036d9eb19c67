"""RFM scoring and the BG/NBD fit, beside pandas and `lifetimes` doing the same work.

Targets (issue 8): on 10,000,000 orders of 1,000,000 customers, RFM scoring ≤ 5 s, ≥ 10×
faster than pandas group-by code doing the same and ≥ 20× faster than lifetimes'
`summary_data_from_transaction_data`; the BG/NBD fit on CDNOW ≤ 1 s.

The data: a fresh SQLite database in a temporary directory, migrated by omniloop (so it has
omniloop's schema and indexes, including analytics' covering index on orders), one brand made
through the service, then `--customers` customers and `--orders` orders written by SQLite
itself (a recursive CTE, indexes dropped during the load and rebuilt after). Order `i` belongs
to a customer drawn by a fixed hash of `i` and skewed so that some customers buy far more
often than others; payments spread evenly over two years; about 2 % of orders refunded in full
and 3 % in part. Everything is deterministic.

After the load, `analytics.totals.rebuild_totals` fills the per-customer totals as the
migration does for orders already there (the order and refund listeners keep them current
afterwards; these orders were written by SQL, not through the services).

What is timed, all in this one process, as of today (the brand's time zone):

* **omniloop** — `rfm.score_customers(session, actor, today)`, the function the platform
  calls: one row per customer from `customer_order_totals`, then NumPy for the quintiles and
  segments. Best and median of `--repeat` runs; the split between reading (with fetching the
  rows into Python) and NumPy is printed too. Also, once each, as of past days (the last
  day of the data, and 30, 90 and 365 days before it): the totals less the orders paid
  since, or, when most orders were paid since, one GROUP BY over every order (answered from
  the covering index); the GROUP BY alone is timed beside each.
* **pandas** — the same result from the same database: `pandas.read_sql_query` of the orders'
  customer, payment time, status and amounts, then filter, `groupby(...).agg(...)`,
  `rank(method="min")` quintiles and the same segment grid. Its reading and its computing are
  timed apart, so the ratio can be read both for the whole job (what the platform's path
  replaces) and against pandas' in-memory group-by alone. Its scores must equal omniloop's,
  customer by customer, or the run fails.
* **lifetimes** — `summary_data_from_transaction_data` (frequency, recency, T, monetary per
  customer, `freq="D"`) on the DataFrame pandas already read, i.e. its in-memory work only.
* **BG/NBD on CDNOW** — `clv.summarise` + `clv.fit_bgnbd` on the CDNOW sample (2,357
  customers), best of 5, beside `lifetimes.BetaGeoFitter().fit` on the same summary.

Usage: `.venv/bin/python bench/bench_analytics.py [--orders N] [--customers N] [--markdown]`.
The default size (1,000,000 orders) keeps `make bench` within a couple of minutes; the issue's
size is `--orders 10000000` (about 8 GB of temporary disk and 10 GB of memory for pandas).
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from harness import Children, cpu_model, run_bench, version

TENANT = "bench"
START = datetime(2024, 11, 1, tzinfo=UTC)
SPAN_SECONDS = 2 * 365 * 86_400
CDNOW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cdnow" \
    / "CDNOW_sample.txt"
TARGET_RFM_SECONDS = 5.0
# Past days scored besides today: days before the last day of the data.
PAST_DAYS = (0, 30, 90, 365)
TARGET_PANDAS_RATIO = 10.0
TARGET_LIFETIMES_RATIO = 20.0
TARGET_FIT_SECONDS = 1.0


@dataclass
class Results:
    orders: int
    customers: int
    scored: int = 0
    build_seconds: float = 0.0
    db_mb: float = 0.0
    omniloop: list[float] = field(default_factory=list)
    omniloop_query: float = 0.0
    omniloop_numpy: float = 0.0
    # days before the last day of the data → (seconds via the totals, via the GROUP BY)
    omniloop_past: dict[int, tuple[float, float]] = field(default_factory=dict)
    pandas_read: float = 0.0
    pandas_compute: float = 0.0
    pandas_equal: bool = False
    lifetimes: float | None = None
    fit: list[float] = field(default_factory=list)
    fit_lifetimes: float | None = None
    fit_params: dict[str, float] = field(default_factory=dict)
    plan: str = ""


# --------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------

def build(path: Path, orders: int, customers: int) -> tuple[str, date]:
    """Migrate a fresh database, make the brand, load customers and orders with SQL."""
    from omniloop import models  # noqa: F401  (every table, for the mappers)
    from omniloop.core.db import Database
    from omniloop.core.migrate import upgrade
    from omniloop.tenancy import tenants

    database = Database(f"sqlite:///{path}")
    upgrade(database.engine)
    with database.unit_of_work() as session:
        tenant_id = tenants.create_tenant(session, slug=TENANT, name="Bench Coffee").id
    database.dispose()

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    indexes = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='orders' "
        "AND sql IS NOT NULL")]
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND "
                                "tbl_name='orders' AND sql IS NOT NULL").fetchall():
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.execute(
        f"""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
        INSERT INTO customers (tenant_id, id, tags, created_at, updated_at)
        SELECT '{tenant_id}', printf('C%025d', i), '[]', '2024-10-01 00:00:00.000000',
               '2024-10-01 00:00:00.000000' FROM n""", (customers,))
    # h: a fixed hash of i; the customer index is skewed towards small indexes by the
    # second factor, so purchase counts range from one to dozens.
    conn.execute(
        f"""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :n),
        o AS MATERIALIZED (
            SELECT i, (i * 2654435761) % 4294967296 AS h FROM n)
        INSERT INTO orders (tenant_id, id, external_id, source, channel, store_id,
            customer_id, currency, subtotal_minor, discount_minor, total_minor, refunded_minor,
            status, paid_at, content_digest, created_at, updated_at)
        SELECT '{tenant_id}', printf('O%025d', i), printf('X%d', i), 'pos', 'online', NULL,
            printf('C%025d', ((h % :c) * ((h / 7) % 1000 + 1)) / 1000),
            'TWD', 5000 + (h / 13) % 50000, 0, 5000 + (h / 13) % 50000,
            CASE WHEN h % 100 < 2 THEN 5000 + (h / 13) % 50000
                 WHEN h % 100 < 5 THEN 2000 ELSE 0 END,
            CASE WHEN h % 100 < 2 THEN 'refunded' WHEN h % 100 < 5 THEN 'partially_refunded'
                 ELSE 'paid' END,
            strftime('%Y-%m-%d %H:%M:%S.000000', :start + i * :span / :n, 'unixepoch'),
            '', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000'
        FROM o""",
        {"n": orders, "c": customers, "start": int(START.timestamp()), "span": SPAN_SECONDS})
    conn.execute("COMMIT")
    for sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    # The per-customer totals, as the migration builds them for orders already there (the
    # listeners keep them afterwards; these orders did not pass through the services).
    from omniloop.analytics.totals import rebuild_totals

    database = Database(f"sqlite:///{path}")
    with database.unit_of_work() as session:
        rebuild_totals(session, tenant_id)
    database.dispose()
    last_day = datetime.fromtimestamp(START.timestamp() + SPAN_SECONDS, UTC).date()
    return tenant_id, last_day


# --------------------------------------------------------------------------------------------
# The three ways
# --------------------------------------------------------------------------------------------

def run_omniloop(path: Path, tenant_id: str, as_of: date, past: date, repeat: int,
                 results: Results) -> Any:
    from omniloop.analytics import rfm
    from omniloop.core.db import Database
    from omniloop.tenancy.access import system_actor
    from omniloop.tenancy.tenants import get_tenant

    database = Database(f"sqlite:///{path}")
    actor = system_actor(tenant_id, "bench")
    scores = None
    for _ in range(repeat):
        gc.collect()
        with database.unit_of_work(write=False) as session:
            begin = time.perf_counter()
            scores = rfm.score_customers(session, actor, as_of)
            results.omniloop.append(time.perf_counter() - begin)
    # The split, once more: the query and fetch, then the NumPy part.
    with database.unit_of_work(write=False) as session:
        timezone = get_tenant(session, tenant_id).timezone
        begin = time.perf_counter()
        inputs = rfm.rfm_inputs(session, tenant_id, as_of, timezone)
        middle = time.perf_counter()
        rfm.score(inputs, as_of)
        results.omniloop_query = middle - begin
        results.omniloop_numpy = time.perf_counter() - middle
    # And as of past days: the totals less what was paid since (`rfm._totals_as_of`), or
    # the GROUP BY over every order when most were paid since; beside the GROUP BY itself.
    for days_back in PAST_DAYS:
        day = past - timedelta(days=days_back)
        with database.unit_of_work(write=False) as session:
            gc.collect()
            begin = time.perf_counter()
            rfm.score_customers(session, actor, day)
            via_totals = time.perf_counter() - begin
        with database.unit_of_work(write=False) as session:
            gc.collect()
            begin = time.perf_counter()
            rfm.score(rfm.rfm_inputs(session, tenant_id, day, timezone, use_totals=False), day)
            results.omniloop_past[days_back] = (via_totals, time.perf_counter() - begin)
    with database.unit_of_work(write=False) as session:
        plan = session.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT customer_id, max(paid_at), count(*), "
            "sum(total_minor - refunded_minor) FROM orders WHERE tenant_id = ? AND "
            "customer_id IS NOT NULL AND paid_at < ? AND status != 'refunded' "
            "GROUP BY customer_id", (tenant_id, "2100-01-01")).all()
        results.plan = "; ".join(str(row[-1]) for row in plan)
    database.dispose()
    assert scores is not None
    results.scored = len(scores)
    return scores


def pandas_scores(frame: Any, cutoff: datetime) -> Any:
    """The same RFM as omniloop's, written as one would in pandas."""
    import pandas as pd

    from omniloop.analytics.rfm import GRID

    paid = frame[(frame["status"] != "refunded") & (frame["paid_at"] < cutoff)]
    paid = paid.assign(net=paid["total_minor"] - paid["refunded_minor"])
    per = paid.groupby("customer_id").agg(last=("paid_at", "max"),
                                          frequency=("paid_at", "size"),
                                          monetary=("net", "sum"))
    n = len(per)
    recency = (pd.Timestamp(cutoff) - per["last"]).dt.total_seconds() // 86_400

    def fifths(values: Any) -> Any:
        return 1 + (5 * (values.rank(method="min").astype("int64") - 1)) // n

    per["r"], per["f"], per["m"] = fifths(-recency), fifths(per["frequency"]), \
        fifths(per["monetary"])
    fm = (per["f"] + per["m"] + 1) // 2
    per["segment"] = GRID[per["r"].to_numpy() - 1, fm.to_numpy() - 1]
    return per


def run_pandas(path: Path, tenant_id: str, as_of: date, results: Results,
               omniloop_scores: Any) -> Any:
    import pandas as pd

    from omniloop.analytics.rfm import day_end_utc

    cutoff = day_end_utc(as_of, "Asia/Taipei").replace(tzinfo=None)
    gc.collect()
    begin = time.perf_counter()
    with sqlite3.connect(path) as conn:
        frame = pd.read_sql_query(
            "SELECT customer_id, paid_at, status, total_minor, refunded_minor FROM orders "
            "WHERE tenant_id = ? AND customer_id IS NOT NULL", conn, params=(tenant_id,))
    frame["paid_at"] = pd.to_datetime(frame["paid_at"], format="%Y-%m-%d %H:%M:%S.%f")
    middle = time.perf_counter()
    per = pandas_scores(frame, cutoff)
    results.pandas_compute = time.perf_counter() - middle
    results.pandas_read = middle - begin
    ours = {cid: i for i, cid in enumerate(omniloop_scores.customer_ids)}
    order = np.array([ours[c] for c in per.index])
    results.pandas_equal = bool(
        len(per) == len(ours)
        and np.array_equal(per["r"].to_numpy(), omniloop_scores.r[order])
        and np.array_equal(per["f"].to_numpy(), omniloop_scores.f[order])
        and np.array_equal(per["m"].to_numpy(), omniloop_scores.m[order])
        and np.array_equal(per["segment"].to_numpy(), omniloop_scores.segment[order])
        and np.array_equal(per["monetary"].to_numpy(), omniloop_scores.monetary_minor[order]))
    return frame


def run_lifetimes(frame: Any, as_of: date, results: Results) -> None:
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    paid = frame[frame["status"] != "refunded"]
    paid = paid.assign(net=paid["total_minor"] - paid["refunded_minor"])
    gc.collect()
    begin = time.perf_counter()
    summary_data_from_transaction_data(paid, "customer_id", "paid_at",
                                       monetary_value_col="net",
                                       observation_period_end=pd.Timestamp(as_of), freq="D")
    results.lifetimes = time.perf_counter() - begin


def run_fit(results: Results) -> None:
    from omniloop.analytics import clv
    from omniloop.analytics.transactions import read_transactions

    lines = ["customer_id,date,amount"]
    for row in CDNOW.read_text().splitlines():
        fields = row.split()
        if fields:
            lines.append(f"{fields[0]},{fields[2]},{fields[4]}")
    rows = read_transactions("\n".join(lines))
    end = date(1997, 9, 30).toordinal()
    params = None
    for _ in range(5):
        begin = time.perf_counter()
        _, summary = clv.summarise(rows.customer_index, rows.day, rows.amount, end)
        params = clv.fit_bgnbd(summary)
        results.fit.append(time.perf_counter() - begin)
    assert params is not None
    results.fit_params = {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b}
    try:
        from lifetimes import BetaGeoFitter
    except ImportError:
        return
    begin = time.perf_counter()
    BetaGeoFitter().fit(summary.frequency, summary.recency, summary.T)
    results.fit_lifetimes = time.perf_counter() - begin


# --------------------------------------------------------------------------------------------
# The run and its report
# --------------------------------------------------------------------------------------------

def work(args: argparse.Namespace, tmp: Path) -> Results:
    results = Results(orders=args.orders, customers=args.customers)
    run_fit(results)
    path = tmp / "bench.db"
    begin = time.perf_counter()
    tenant_id, as_of = build(path, args.orders, args.customers)
    results.build_seconds = time.perf_counter() - begin
    results.db_mb = path.stat().st_size / 2**20
    print(f"built {args.orders:,} orders of {args.customers:,} customers in "
          f"{results.build_seconds:.0f} s ({results.db_mb:,.0f} MiB)", file=sys.stderr)
    from omniloop.core.clock import to_local, utcnow

    today = to_local(utcnow(), "Asia/Taipei").date()
    scores = run_omniloop(path, tenant_id, today, as_of, args.repeat, results)
    if not args.no_peers:
        frame = run_pandas(path, tenant_id, today, results, scores)
        if not results.pandas_equal:
            raise SystemExit("pandas and omniloop disagree on the scores: the run is void")
        if args.orders <= args.lifetimes_max_orders:
            run_lifetimes(frame, today, results)
    return results


def report(r: Results, markdown: bool, load: tuple[float, float] | None) -> str:
    best = min(r.omniloop)
    median = statistics.median(r.omniloop)
    pandas_total = r.pandas_read + r.pandas_compute
    rows = [
        ("omniloop RFM as of today (totals + NumPy)", f"{best:.2f} s best, {median:.2f} s median",
         f"read+fetch {r.omniloop_query:.2f} s, NumPy {r.omniloop_numpy:.2f} s", "–"),
    ]
    for days_back, (via_totals, via_orders) in r.omniloop_past.items():
        day = "the last day of the data" + (f" − {days_back} days" if days_back else "")
        rows.append((f"omniloop RFM as of {day}", f"{via_totals:.2f} s",
                     f"the GROUP BY over every order alone: {via_orders:.2f} s", "–"))
    if pandas_total:
        rows.append(("pandas: read_sql + group-by", f"{pandas_total:.2f} s",
                     f"read {r.pandas_read:.2f} s, group-by and scores "
                     f"{r.pandas_compute:.2f} s", f"{pandas_total / best:.1f}× "
                     f"(in-memory part alone: {r.pandas_compute / best:.1f}×)"))
    if r.lifetimes is not None:
        rows.append(("lifetimes summary_data_from_transaction_data", f"{r.lifetimes:.2f} s",
                     "in memory, on pandas' DataFrame", f"{r.lifetimes / best:.1f}×"))
    fit = min(r.fit)
    rows.append(("BG/NBD fit on CDNOW (omniloop)", f"{fit * 1000:.0f} ms best of 5",
                 ", ".join(f"{k} {v:.4g}" for k, v in r.fit_params.items()), "–"))
    if r.fit_lifetimes is not None:
        rows.append(("BG/NBD fit on CDNOW (lifetimes BetaGeoFitter)",
                     f"{r.fit_lifetimes * 1000:.0f} ms", "same summary",
                     f"{r.fit_lifetimes / fit:.1f}×"))
    head = (f"RFM on {r.orders:,} orders of {r.customers:,} customers ({r.scored:,} scored), "
            f"SQLite {sqlite3.sqlite_version}, numpy {version('numpy')}, pandas "
            f"{version('pandas')}, lifetimes {version('lifetimes')}; {cpu_model()}, "
            f"{os.cpu_count()} CPUs")
    lines = [head, f"query plan: {r.plan}"]
    if markdown:
        lines += ["", "| what | time | detail | peer ÷ omniloop |", "|---|---:|---|---:|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    else:
        lines += [f"  {a:<48} {b:>26}  {c}  {d}" for a, b, c, d in rows]
    verdicts = [f"RFM ≤ {TARGET_RFM_SECONDS:.0f} s: "
                f"{'met' if best <= TARGET_RFM_SECONDS else 'MISSED'}",
                f"BG/NBD fit ≤ {TARGET_FIT_SECONDS:.0f} s: "
                f"{'met' if fit <= TARGET_FIT_SECONDS else 'MISSED'}"]
    if pandas_total:
        verdicts.append(f"≥ {TARGET_PANDAS_RATIO:.0f}× pandas (whole job): "
                        f"{'met' if pandas_total / best >= TARGET_PANDAS_RATIO else 'MISSED'}")
    if r.lifetimes is not None:
        verdicts.append(f"≥ {TARGET_LIFETIMES_RATIO:.0f}× lifetimes: "
                        f"{'met' if r.lifetimes / best >= TARGET_LIFETIMES_RATIO else 'MISSED'}")
    lines.append("targets: " + "; ".join(verdicts))
    if load is not None:
        lines.append(f"load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=0,
                        help="default: a tenth of --orders")
    parser.add_argument("--repeat", type=int, default=3, help="omniloop runs (best is kept)")
    parser.add_argument("--lifetimes-max-orders", type=int, default=10_000_000,
                        help="skip lifetimes above this many orders")
    parser.add_argument("--no-peers", action="store_true", help="omniloop only")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    args.customers = args.customers or max(args.orders // 10, 1)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    def run(_children: Children, tmp: Path) -> Results:
        return work(args, tmp)

    found = run_bench("omniloop-bench-analytics-", pin=False, work=run,
                      report=lambda r, _pin, load: report(r, args.markdown, load))
    return 130 if found is None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
