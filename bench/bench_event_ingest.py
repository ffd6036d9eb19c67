"""Event ingestion through the HTTP API, side by side with the raw floor of the same rows.

omniloop runs as a real uvicorn process on 127.0.0.1 (one worker, no access log, as
`omniloop serve` runs it) on a fresh SQLite database in a temporary directory, seeded through
the service functions with one brand, 4 stores, an `ingest` API key and a pool of known
identities (5,000 devices and 5,000 phones, stored by ingesting one event for each). A
separate load process posts 1,000-event batches to `POST /api/v1/events` over keep-alive
connections, with the API key:

  * every event has a new client id; 70 % name an identity already known (half devices,
    half phones written as people type them: `0912-345-678`, `+886 912 345 678`,
    `0912345678`), 30 % a device id never seen before (each gets an anonymous profile);
  * a mix of catalogue types, online and offline, offline ones with a store code, small
    `properties`, `occurred_at` in the last hours in Taipei time.

The batches are built and serialised before the clock starts, so the load process only
sends bytes. Every answer must be `201` with all 1,000 events accepted, or the run fails.
Then every batch is sent a second time and must answer `201` with 0 accepted and 1,000
duplicates (the idempotency check; not timed), and the number of stored events must be
exactly the number sent. Measured: events/s end to end (wall time from the first request to
the last answer) and the server's CPU time per event (from /proc).

The raw floor, in the same run: the very rows omniloop stored (read back from its database,
in its order) inserted with bare `sqlite3` `executemany` in 1,000-row transactions into the
same `events` table: a copy of omniloop's database (same schema and indexes, the same
customers so the foreign keys are checked as they were for omniloop) from which the run's
events were deleted. Same PRAGMAs as omniloop's SQLite write connection (core/db.py: WAL,
synchronous=NORMAL, foreign keys on, the WAL auto-checkpoint and the page cache). Events
only: the floor does not look anything up and does not create the profiles and identities.

On Linux with 2 or more CPUs the server (and the floor) run on the first CPU and the load
process on the second (--no-pin to turn this off).

A PASS/FAIL line compares with the target (20,000 events/s); the exit status is 1 only for a
failed run, or with --strict for a missed target too. Identify calls/s: bench_identify.py.

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`, `_floor <json>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from harness import (
    Children,
    Server,
    add_report_options,
    child_env,
    drive,
    floor_connection,
    load_line,
    machine_line,
    post_requests,
    render_table,
    run_bench,
    run_child,
    seed_brand,
)

BATCH = 1000
TARGET_EVENTS = 20_000.0
KNOWN_DEVICES = 5_000
KNOWN_PHONES = 5_000
STORE_CODES = ("TPE-01", "TPE-02", "TXG-01", "KHH-01")
RUN_PREFIX = "run"
EVENT_COLUMNS = ("tenant_id", "id", "client_event_id", "customer_id", "type", "channel",
                 "source", "store_id", "campaign_id", "properties", "occurred_at",
                 "received_at")
TAIPEI = ZoneInfo("Asia/Taipei")


def known_device(n: int) -> str:
    return f"dev-known-{n:05d}"


def phone_digits(n: int) -> str:
    """A valid Taiwanese mobile number, 10 digits: 0912 000 000 + n."""
    return f"0912{n:06d}"


def phone_as_typed(n: int, style: int) -> str:
    d = phone_digits(n)
    if style == 0:
        return f"{d[:4]}-{d[4:7]}-{d[7:]}"
    if style == 1:
        return f"+886 {d[1:4]} {d[4:7]} {d[7:]}"
    return d


# --------------------------------------------------------------------------------------------
# Seeding (a child process, with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

def seed(config: dict[str, Any]) -> dict[str, Any]:
    """Migrate a fresh database; a brand, its stores, a key, the known identities."""
    from omniloop.core.db import set_database
    from omniloop.customers.ingest import ingest_events
    from omniloop.customers.ingest_schemas import EventBatchIn

    brand = seed_brand(config["url"], [{"code": code, "name": f"門市 {code}"}
                                       for code in STORE_CODES],
                       [config.get("scope", "ingest")])
    database, tenant_id, actor = brand.database, brand.tenant_id, brand.actor
    at = datetime.now(UTC) - timedelta(days=1)
    devices, phones = config.get("devices", KNOWN_DEVICES), config.get("phones", KNOWN_PHONES)
    identities = ([("device", known_device(n)) for n in range(devices)]
                  + [("phone", phone_digits(n)) for n in range(phones)])
    for start in range(0, len(identities), BATCH):
        chunk = identities[start:start + BATCH]
        batch = EventBatchIn.model_validate({"events": [
            {"id": f"seed-{start + i}", "type": "identified", "occurred_at": at,
             "identity": {"kind": kind, "value": value}, "source": "seed"}
            for i, (kind, value) in enumerate(chunk)]})
        with database.unit_of_work() as session:
            ingest_events(session, actor, batch.events)
    set_database(None)
    database.dispose()
    return {"tenant_id": tenant_id, "api_key": brand.api_key}


# --------------------------------------------------------------------------------------------
# Load generator (a child process)
# --------------------------------------------------------------------------------------------

_KINDS = (  # (type, offline?, properties)
    ("page_view", False, {"path": "/menu/latte", "utm_source": "line", "utm_campaign": "w48"}),
    ("link_click", False, {"url": "https://bean.example/c/w48", "position": 2}),
    ("coupon_claimed", False, {"coupon": "LATTE50", "wallet": True}),
    ("qr_scan", True, {"touchpoint": "table-07", "poster": "autumn"}),
    ("store_visit", True, {"minutes": 35}),
    ("purchase", True, {"amount": 185, "items": 2, "currency": "TWD"}),
    ("message_opened", False, {"message": "w48-push", "channel": "line"}),
)


def build_batches(count: int, tag: str, seed_value: int) -> list[bytes]:
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    batches: list[bytes] = []
    for b in range(count):
        events: list[dict[str, Any]] = []
        for i in range(BATCH):
            type_, offline, properties = _KINDS[rng.randrange(len(_KINDS))]
            roll = rng.random()
            if roll < 0.35:
                identity = {"kind": "device", "value": known_device(rng.randrange(KNOWN_DEVICES))}
            elif roll < 0.70:
                identity = {"kind": "phone", "value": phone_as_typed(
                    rng.randrange(KNOWN_PHONES), rng.randrange(3))}
            else:
                identity = {"kind": "device", "value": f"dev-{tag}-{b}-{i}"}
            at = (now - timedelta(seconds=rng.randrange(6 * 3600))).astimezone(TAIPEI)
            event: dict[str, Any] = {
                "id": f"{RUN_PREFIX}-{tag}-{b}-{i}", "type": type_,
                "source": "pos" if offline else rng.choice(("line", "web", "email", "ad")),
                "occurred_at": at.isoformat(timespec="seconds"), "identity": identity,
                "properties": properties}
            if offline:
                event["store_code"] = STORE_CODES[rng.randrange(len(STORE_CODES))]
            if type_ == "coupon_claimed":
                event["campaign_id"] = "01JCAMPAIGNW48AUTUMN000000"
            events.append(event)
        batches.append(json.dumps({"events": events}, ensure_ascii=False,
                                  separators=(",", ":")).encode())
    return batches


def _answer(body: bytes) -> dict[str, Any]:
    try:
        return dict(json.loads(body))
    except (ValueError, TypeError):
        return {}


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """Post the batches (warm-up first), then post every one of them again: a retry must
    store nothing."""
    bodies = build_batches(config["batches"], config["tag"], 48)
    headers = {"Authorization": f"Bearer {config['api_key']}",
               "Content-Type": "application/json"}
    requests = post_requests(config["base_url"], "/api/v1/events", headers, bodies)

    def stored(status: int, body: bytes) -> str | None:
        if status != 201:
            return f"POST /events answered {status}: {body[:400]!r}"
        if _answer(body).get("accepted") != BATCH:
            return f"POST /events did not accept every event: {body[:400]!r}"
        return None

    figures = drive(config["base_url"], requests, warmup=config["warmup"],
                    connections=config["connections"], seconds=config["seconds"], check=stored,
                    server_pid=config["server_pid"])
    if "error" in figures:
        return figures
    sent = config["warmup"] + figures["requests"]

    def duplicates(status: int, body: bytes) -> str | None:
        answer = _answer(body)
        if status != 201 or answer.get("accepted") != 0 or answer.get("duplicates") != BATCH:
            return f"a retried batch answered {status}: {body[:400]!r}"
        return None

    retried = drive(config["base_url"], requests[:sent], warmup=0,
                    connections=config["connections"], seconds=3600, check=duplicates,
                    server_pid=None)
    if "error" in retried:
        return retried
    return {**figures, "sent": sent, "retried": retried["requests"]}


# --------------------------------------------------------------------------------------------
# The raw floor (a child process)
# --------------------------------------------------------------------------------------------

def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    """Copy omniloop's database without the run's events, then insert those very rows."""
    columns = ", ".join(EVENT_COLUMNS)
    like = f"{RUN_PREFIX}-%"
    with contextlib.closing(floor_connection(config["source"])) as source:
        rows = source.execute(f"SELECT {columns} FROM events WHERE client_event_id LIKE ? "
                              "ORDER BY rowid", (like,)).fetchall()
        with contextlib.closing(sqlite3.connect(config["floor"])) as target:
            source.backup(target)
        sizes = {table: source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("events", "customers", "customer_identities")}
        indexes = [name for (name,) in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "ORDER BY name")]
    with contextlib.closing(floor_connection(config["floor"])) as conn:
        conn.execute("DELETE FROM events WHERE client_event_id LIKE ?", (like,))
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with contextlib.closing(floor_connection(config["floor"])) as conn:
        sql = f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        cpu, begin = time.process_time(), time.perf_counter()
        for start in range(0, len(rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany(sql, rows[start:start + BATCH])
            conn.execute("COMMIT")
        wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
        stored = conn.execute("SELECT count(*) FROM events WHERE client_event_id LIKE ?",
                              (like,)).fetchone()[0]
    return {"rows": len(rows), "stored": stored, "seconds": wall, "cpu": cpu, "sizes": sizes,
            "indexes": indexes}


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Figures:
    events: int
    events_seconds: float
    events_server_cpu: float | None
    events_client_cpu: float
    batch_p50_ms: float
    batch_p99_ms: float
    retried: int
    floor_rows: int
    floor_seconds: float
    floor_cpu: float
    sizes: dict[str, int]
    indexes: list[str]


def run(args: argparse.Namespace, children: Children, tmp: Path) -> Figures:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print("seeding …", file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {"url": url}, env, data_dir, timeout=120)
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe="/api/v1/events/types")
    try:
        server.wait_ready({"Authorization": f"Bearer {seeded['api_key']}"})
        print(f"POST /events: {args.batches} batches of {BATCH:,} over {args.connections} "
              "connections, then each again (a retry stores nothing) …", file=sys.stderr,
              flush=True)
        events = run_child(children, __file__, "_load", {
            "base_url": server.base_url, "api_key": seeded["api_key"],
            "server_pid": server.process.pid, "connections": args.connections, "tag": "1",
            "batches": args.batches + args.warmup, "warmup": args.warmup,
            "seconds": args.seconds}, child_env({}), tmp, timeout=args.seconds + 300, cpu=1)
        if "error" in events:
            raise SystemExit(f"FAILED: POST /events: {events['error']}\nserver log tail:\n"
                             f"{server.log.read_text(errors='replace')[-2000:]}")
    finally:
        server.stop()
    print("raw floor …", file=sys.stderr, flush=True)
    floor = run_child(children, __file__, "_floor", {"source": str(db_path),
                                                     "floor": str(tmp / "floor.db")},
                      child_env({}), tmp, timeout=300, cpu=0)
    expected = events["sent"] * BATCH
    if floor["rows"] != expected or floor["stored"] != expected:
        raise SystemExit(f"FAILED: omniloop stored {floor['rows']:,} run events and the floor "
                         f"{floor['stored']:,}; expected {expected:,}")
    return Figures(
        events=events["requests"] * BATCH, events_seconds=events["seconds"],
        events_server_cpu=events["server_cpu"], events_client_cpu=events["client_cpu"],
        batch_p50_ms=events["p50_ms"], batch_p99_ms=events["p99_ms"],
        retried=events["retried"], floor_rows=floor["rows"], floor_seconds=floor["seconds"],
        floor_cpu=floor["cpu"], sizes=floor["sizes"], indexes=floor["indexes"])


def _pragmas() -> str:
    from omniloop.core.db import SQLITE_WAL_AUTOCHECKPOINT, SQLITE_WRITE_CACHE_KIB

    return (f"WAL, synchronous=NORMAL, foreign_keys=ON, "
            f"wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}, "
            f"cache_size={SQLITE_WRITE_CACHE_KIB // 1024} MiB")


def report(f: Figures, args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None, markdown: bool) -> str:
    rate = f.events / f.events_seconds
    floor_rate = f.floor_rows / f.floor_seconds
    batches = f.events / BATCH

    def us(cpu: float | None, n: float) -> str:
        return f"{cpu / n * 1e6:,.1f}" if cpu is not None and n else "n/a"

    rows = [
        ("POST /api/v1/events (omniloop, HTTP)", f"{rate:,.0f} events/s",
         f"{us(f.events_server_cpu, f.events)} µs/event",
         f"batch p50 {f.batch_p50_ms:.0f} ms, p99 {f.batch_p99_ms:.0f} ms; "
         f"{f.events:,} events in {f.events_seconds:.1f} s"),
        ("raw floor (sqlite3 executemany)", f"{floor_rate:,.0f} events/s",
         f"{us(f.floor_cpu, f.floor_rows)} µs/event",
         f"{f.floor_rows:,} rows in {f.floor_seconds:.2f} s"),
    ]
    header = ("what", "throughput", "server CPU", "notes")
    table = render_table(header, rows, markdown, left=(0, 3))
    lines = [
        f"omniloop event ingestion: {BATCH:,}-event batches over {args.connections} keep-alive "
        f"connections; {'server and load process pinned to a CPU each' if pinned else 'unpinned'}",
        machine_line("fastapi", "pydantic", "SQLAlchemy", "uvicorn"),
        f"SQLite settings (omniloop's write connection and the floor): {_pragmas()}; "
        f"indexes on events: {', '.join(f.indexes)}",
    ]
    if load is not None:
        lines.append(load_line(load))
    cpu_ratio = (f"; omniloop server CPU per event ÷ floor's: "
                 f"{f.events_server_cpu / f.events / (f.floor_cpu / f.floor_rows):.1f}×"
                 if f.events_server_cpu is not None and f.floor_cpu else "")
    lines += ["", *table, "",
              f"omniloop ÷ floor: {rate / floor_rate:.2f} in events/s (floor ÷ omniloop "
              f"{floor_rate / rate:.1f}×){cpu_ratio}",
              f"retry: all {f.retried:,} batches sent again answered 0 accepted, "
              f"{BATCH:,} duplicates",
              f"database after the run: {f.sizes['events']:,} events, "
              f"{f.sizes['customers']:,} profiles, {f.sizes['customer_identities']:,} "
              "identities",
              f"server CPU: {f.events_server_cpu / batches * 1000:,.1f} ms per batch; "
              f"load process CPU {f.events_client_cpu / f.events_seconds:.0%} of wall"
              if f.events_server_cpu is not None else "server CPU: n/a",
              "",
              f"{'PASS' if rate >= TARGET_EVENTS else 'FAIL'}: event ingestion "
              f"{rate:,.0f} events/s (target ≥ {TARGET_EVENTS:,.0f})"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Event ingestion through omniloop's HTTP API (1,000-event batches) "
                    "against bare sqlite3 executemany of the same rows, on 127.0.0.1, on a "
                    "fresh SQLite database.")
    parser.add_argument("--batches", type=int, default=400,
                        help="measured batches at most (default: 400 = 400,000 events)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="stop sending batches after this long (default: 15)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="batches sent first, not measured (default: 3)")
    parser.add_argument("--connections", type=int, default=2,
                        help="keep-alive connections posting batches (default: 2: SQLite "
                             "writes one batch at a time; a second connection lets the "
                             "server read the next body meanwhile)")
    add_report_options(parser)
    args = parser.parse_args(argv)
    if args.batches < 1 or args.seconds <= 0 or args.warmup < 0 or args.connections < 1:
        parser.error("counts must be >= 1 (--warmup >= 0) and durations > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    figures = run_bench(
        "omniloop-bench-events-", pin=not args.no_pin,
        work=lambda children, tmp: run(args, children, tmp),
        report=lambda found, pin, load: report(found, args, pin, load, args.markdown))
    if figures is None:
        return 130
    met = figures.events / figures.events_seconds >= TARGET_EVENTS
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load", "_floor"):
        task = {"_seed": seed, "_load": run_load, "_floor": run_floor}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
