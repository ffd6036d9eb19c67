"""Coupon code generation: a million unique codes through the batch service, against the raw
`executemany` floor of the very same rows. Target: 1,000,000 codes stored in ≤ 10 s.

omniloop: a child process migrates a fresh SQLite database in a temporary directory (WAL,
`synchronous=NORMAL` and the other pragmas of `core.db`, as the product runs), creates a
brand and a unique-code campaign through the service functions, then times what
`POST /campaigns/{id}/code-batches` sets going: `batches.create_batch` (capacity check, the
batch row, the audit entry) in a unit of work, then `batches.start_batch` — the background
thread, which generates and commits the codes chunk by chunk — until the thread ends. The
batch must end `done`, with exactly the codes asked for, all distinct, or the run fails.

The raw floor, in the same run, in a child process of its own: the rows omniloop stored,
read back from its database in their order (pre-generated values: tenant, id, campaign,
code, batch, status, created_at), inserted with bare `sqlite3` `executemany` into a copy of
that database with its coupons deleted (the same schema, indexes and campaign, so foreign
keys are checked as they were for omniloop), in transactions of the same size as the
product's chunks, with the same pragmas. No Python code generation, no ids, no uniqueness
handling beyond the unique index itself.

On Linux with 2 or more CPUs both children run pinned to the first CPU (--no-pin to turn
this off), so neither gets a second core the other did not. The exit status is 1 only for
a failed run, or with --strict for a missed target too.

Internal modes (used by the script itself): `_product <json>`, `_floor <json>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    Children,
    add_report_options,
    child_env,
    floor_connection,
    load_line,
    machine_line,
    render_table,
    run_bench,
    run_child,
    seed_brand,
)

TARGET_SECONDS = 10.0
PATTERN = "CAFE-####-####"
COUPON_COLUMNS = ("tenant_id", "id", "campaign_id", "code", "batch_id", "status", "created_at")


# --------------------------------------------------------------------------------------------
# omniloop (a child process)
# --------------------------------------------------------------------------------------------

def run_product(config: dict[str, Any]) -> dict[str, Any]:
    """Seed a fresh database, then time one batch of `count` codes through the service."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from omniloop.campaigns import batches, service
    from omniloop.campaigns.models import CodeBatch, Coupon
    from omniloop.campaigns.schemas import CampaignCreate
    from omniloop.core.clock import utcnow

    if config["chunk"]:
        batches.CHUNK_SIZE = int(config["chunk"])
    brand = seed_brand(config["url"], actor_label="bench")
    database, tenant_id, actor = brand.database, brand.tenant_id, brand.actor
    with database.unit_of_work() as session:
        campaign_id = service.create_campaign(session, actor, CampaignCreate(
            name="百萬序號", kind="amount_off", value_minor=5000, starts_at=utcnow(),
            ends_at=utcnow() + timedelta(days=30))).id

    cpu, begin = time.process_time(), time.perf_counter()
    with database.unit_of_work() as session:
        batch_id = batches.create_batch(session, actor, campaign_id, config["pattern"],
                                        config["count"]).id
    batches.start_batch(database, tenant_id, batch_id).join()
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu

    with database.unit_of_work(write=False) as session:
        batch = session.get_one(CodeBatch, (tenant_id, batch_id))
        rows, distinct = session.execute(select(func.count(), func.count(Coupon.code.distinct()))
                                         .where(Coupon.tenant_id == tenant_id)).one()
        status, created = batch.status.value, batch.created_count
    database.dispose()  # checkpoints the WAL into the database file
    return {"seconds": wall, "cpu": cpu, "status": status, "created": created,
            "rows": int(rows), "distinct": int(distinct), "chunk": batches.CHUNK_SIZE,
            "db_mb": Path(config["path"]).stat().st_size / 2**20}


# --------------------------------------------------------------------------------------------
# The raw floor (a child process)
# --------------------------------------------------------------------------------------------

def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    """Copy omniloop's database without its coupons, then insert those very rows again."""
    columns = ", ".join(COUPON_COLUMNS)
    with contextlib.closing(floor_connection(config["source"])) as source:
        rows = source.execute(f"SELECT {columns} FROM coupons ORDER BY rowid").fetchall()
        with contextlib.closing(sqlite3.connect(config["floor"])) as target:
            source.backup(target)
    with contextlib.closing(floor_connection(config["floor"])) as conn:
        conn.execute("DELETE FROM coupons")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    chunk = int(config["chunk"])
    with contextlib.closing(floor_connection(config["floor"])) as conn:
        sql = f"INSERT INTO coupons ({columns}) VALUES ({', '.join('?' * len(COUPON_COLUMNS))})"
        cpu, begin = time.process_time(), time.perf_counter()
        for start in range(0, len(rows), chunk):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[start:start + chunk])
            conn.execute("COMMIT")
        wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
        stored = conn.execute("SELECT count(*) FROM coupons").fetchone()[0]
    return {"rows": len(rows), "stored": stored, "seconds": wall, "cpu": cpu}


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Round:
    product: dict[str, Any]
    floor: dict[str, Any]


def one_round(args: argparse.Namespace, children: Children, tmp: Path, n: int) -> Round:
    data_dir = tmp / f"round-{n}"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": "bench-secret-key-not-for-production"})
    print(f"round {n}: omniloop, {args.count:,} codes …", file=sys.stderr, flush=True)
    product = run_child(children, __file__, "_product", {
        "url": url, "path": str(db_path), "count": args.count, "pattern": args.pattern,
        "chunk": args.chunk}, env, data_dir, timeout=600, cpu=0)
    if (product["status"], product["created"], product["rows"], product["distinct"]) != (
            "done", args.count, args.count, args.count):
        raise SystemExit(f"FAILED: the batch ended {product['status']} with "
                         f"{product['created']:,} codes counted, {product['rows']:,} stored, "
                         f"{product['distinct']:,} distinct; expected {args.count:,}")
    print(f"round {n}: raw floor …", file=sys.stderr, flush=True)
    floor = run_child(children, __file__, "_floor", {
        "source": str(db_path), "floor": str(tmp / f"floor-{n}.db"),
        "chunk": product["chunk"]}, child_env({}), tmp, timeout=600, cpu=0)
    if floor["rows"] != args.count or floor["stored"] != args.count:
        raise SystemExit(f"FAILED: the floor read {floor['rows']:,} rows and stored "
                         f"{floor['stored']:,}; expected {args.count:,}")
    with contextlib.suppress(OSError):
        for path in data_dir.glob("bench.db*"):
            path.unlink()
        for path in tmp.glob(f"floor-{n}.db*"):
            path.unlink()
    return Round(product=product, floor=floor)


def target_seconds(count: int) -> float:
    return TARGET_SECONDS * count / 1_000_000


def report(rounds: list[Round], args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None, markdown: bool) -> str:
    count = args.count
    header = ("round", "what", "seconds", "codes/s", "CPU s", "µs CPU/code", "notes")
    rows: list[tuple[str, ...]] = []
    for n, r in enumerate(rounds, 1):
        p, f = r.product, r.floor
        rows.append((str(n), "omniloop (batch service)", f"{p['seconds']:.2f}",
                     f"{count / p['seconds']:,.0f}", f"{p['cpu']:.2f}",
                     f"{p['cpu'] / count * 1e6:.1f}",
                     f"{p['chunk']:,}-code chunks; db {p['db_mb']:.0f} MB"))
        rows.append((str(n), "raw floor (sqlite3 executemany)", f"{f['seconds']:.2f}",
                     f"{count / f['seconds']:,.0f}", f"{f['cpu']:.2f}",
                     f"{f['cpu'] / count * 1e6:.1f}",
                     f"omniloop ÷ floor: {p['seconds'] / f['seconds']:.2f}× time, "
                     f"{p['cpu'] / f['cpu']:.2f}× CPU"))
    table = render_table(header, rows, markdown, left=(1, 6))
    product = [r.product["seconds"] for r in rounds]
    floor = [r.floor["seconds"] for r in rounds]
    best = min(product)
    lines = [
        f"omniloop coupon codes: {count:,} codes from {args.pattern} for one campaign, fresh "
        f"SQLite database (WAL, synchronous=NORMAL); "
        f"{'both children pinned to the first CPU' if pinned else 'unpinned'}",
        machine_line("SQLAlchemy"),
    ]
    if load is not None:
        lines.append(load_line(load))
    lines += ["", *table, ""]
    if len(rounds) > 1:
        lines.append(f"median of {len(rounds)} rounds: omniloop "
                     f"{statistics.median(product):.2f} s, floor {statistics.median(floor):.2f} s;"
                     f" best omniloop {best:.2f} s")
    target = target_seconds(count)
    scaled = "" if count == 1_000_000 else ", scaled from 10 s for 1,000,000"
    lines.append(f"{'PASS' if best <= target else 'FAIL'}: {count:,} codes in {best:.2f} s "
                 f"(target ≤ {target:.2f} s{scaled})")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A million unique coupon codes through omniloop's batch service against "
                    "bare sqlite3 executemany of the same rows, on a fresh SQLite database.")
    parser.add_argument("--count", type=int, default=1_000_000,
                        help="codes in the batch (default: 1,000,000)")
    parser.add_argument("--pattern", default=PATTERN,
                        help=f"the code pattern (default: {PATTERN})")
    parser.add_argument("--chunk", type=int, default=0,
                        help="codes per transaction (default: the product's CHUNK_SIZE)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="omniloop and floor runs, alternating (default: 1)")
    add_report_options(parser, pinned="the children to the first CPU")
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1 or args.chunk < 0:
        parser.error("--count and --rounds must be >= 1, --chunk >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rounds = run_bench(
        "omniloop-bench-codes-", pin=not args.no_pin,
        work=lambda children, tmp: [one_round(args, children, tmp, n)
                                    for n in range(1, args.rounds + 1)],
        report=lambda found, pin, load: report(found, args, pin, load, args.markdown))
    if rounds is None:
        return 130
    met = min(r.product["seconds"] for r in rounds) <= target_seconds(args.count)
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_product", "_floor"):
        task = {"_product": run_product, "_floor": run_floor}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
