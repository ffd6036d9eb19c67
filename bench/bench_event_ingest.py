"""Event ingestion through the HTTP API against the raw-SQL floor; and identify calls/s.

omniloop runs as a real uvicorn process on 127.0.0.1 (one worker, no access log) on a fresh
SQLite database in a temporary directory, seeded through the service functions with one
brand, 4 stores, an `ingest` API key and a pool of known identities (5,000 devices and
5,000 phones, stored by ingesting one event for each). A separate load process posts
1,000-event batches to `POST /api/v1/events` over keep-alive connections:

  * every event has a new client id; 70 % name an identity already known (half devices,
    half phones written as people type them: `0912-345-678`, `+886 912 345 678`,
    `0912345678`), 30 % a device id never seen before (each gets an anonymous profile);
  * a mix of catalogue types, online and offline, offline ones with a store code, small
    `properties`, `occurred_at` in the last hours in Taipei time.

The batches are built and serialised before the clock starts, so the load process only
sends bytes. Every answer must be `201` with all 1,000 events accepted, or the run fails.
Measured: events/s end to end (wall time from the first request to the last answer).

The raw floor, in the same run: the very rows omniloop stored (read back from its database)
inserted with bare `sqlite3` `executemany` in 1,000-row transactions into the same `events`
table: a copy of omniloop's database (migrated the same way, with the same customers, so
the foreign keys are checked as they were for omniloop) from which the run's events were
deleted. Same PRAGMAs as omniloop's connections (WAL, synchronous=NORMAL, foreign keys on).

Then identify: `POST /api/v1/customers/identify` with one phone each, half of them known,
half new (each creates a profile), measured for a few seconds on the same server.

On Linux with 2 or more CPUs the server (and the floor) run on the first CPU and the load
process on the second (--no-pin to turn this off). The server's own CPU time is read from
/proc, so "server CPU per batch / per call" does not depend on how fast the client asks.

PASS/FAIL lines compare with the targets (20,000 events/s, 2,000 identify calls/s); the exit
status is 1 only for a failed run, or with --strict for a missed target too.

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`, `_floor <json>`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from harness import Children, Server, child_env, cpu_model, cpu_seconds, run_child, version

BATCH = 1000
TARGET_EVENTS = 20_000.0
TARGET_IDENTIFY = 2_000.0
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
    """Migrate a fresh database; a brand, its stores, an ingest key, the known identities."""
    from omniloop import models  # noqa: F401  (every table, for the mappers)
    from omniloop.core.db import Database, set_database
    from omniloop.core.migrate import upgrade
    from omniloop.customers.ingest import ingest_events
    from omniloop.customers.ingest_schemas import EventBatchIn
    from omniloop.tenancy import apikeys, stores, tenants
    from omniloop.tenancy.access import system_actor
    from omniloop.tenancy.models import ApiScope
    from omniloop.tenancy.schemas import ApiKeyCreate, StoreCreate

    database = Database(config["url"])
    set_database(database)
    upgrade(database.engine)
    with database.unit_of_work() as session:
        tenant_id = tenants.create_tenant(session, slug="bench", name="Bench Coffee").id
    actor = system_actor(tenant_id)
    with database.unit_of_work() as session:
        for code in STORE_CODES:
            stores.create_store(session, actor, StoreCreate(code=code, name=f"門市 {code}"))
        _, secret = apikeys.create_api_key(session, actor, ApiKeyCreate(
            name="bench ingest", scopes=[ApiScope.ingest]))
    at = datetime.now(UTC) - timedelta(days=1)
    identities = ([("device", known_device(n)) for n in range(KNOWN_DEVICES)]
                  + [("phone", phone_digits(n)) for n in range(KNOWN_PHONES)])
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
    return {"tenant_id": tenant_id, "api_key": secret}


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


def build_identify_bodies(count: int, tag: str, seed_value: int) -> list[bytes]:
    rng = random.Random(seed_value)
    bodies = []
    for n in range(count):
        if n % 2:
            phone = phone_as_typed(rng.randrange(KNOWN_PHONES), rng.randrange(3))
        else:  # new: numbers above the known pool, unique per run
            phone = phone_as_typed(KNOWN_PHONES + 100_000 * int(tag) + n, n % 3)
        bodies.append(json.dumps({"identities": [{"kind": "phone", "value": phone}],
                                  "source": "bench"}).encode())
    return bodies


def _drive(config: dict[str, Any], bodies: list[bytes], path: str, warmup: int,
           check: Any) -> dict[str, Any]:
    """Send `bodies` over `connections` keep-alive connections: `warmup` of them first,
    unmeasured, then the rest until they run out or `seconds` have passed."""
    import httpx

    base_url: str = config["base_url"]
    if urlsplit(base_url).hostname != "127.0.0.1":
        raise SystemExit("the load generator only talks to 127.0.0.1")
    headers = {"Authorization": f"Bearer {config['api_key']}",
               "Content-Type": "application/json"}
    connections: int = config["connections"]
    failure: list[str] = []
    lock = threading.Lock()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        for body in bodies[:warmup]:
            response = client.post(path, content=body)
            problem = check(response)
            if problem:
                return {"error": problem}
    queue = iter(bodies[warmup:])
    done = [0] * connections
    latencies: list[list[float]] = [[] for _ in range(connections)]
    marks: dict[str, float | None] = {}
    deadline = [0.0]

    def start() -> None:
        marks["wall"] = time.perf_counter()
        marks["server_cpu"] = cpu_seconds(config["server_pid"])
        marks["client_cpu"] = time.process_time()
        deadline[0] = time.perf_counter() + config["seconds"]

    barrier = threading.Barrier(connections, start)

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
            try:
                barrier.wait(timeout=60)
                while not failure and time.perf_counter() < deadline[0]:
                    with lock:
                        body = next(queue, None)
                    if body is None:
                        return
                    begin = time.perf_counter()
                    response = client.post(path, content=body)
                    latencies[index].append(time.perf_counter() - begin)
                    problem = check(response)
                    if problem:
                        failure.append(problem)
                        return
                    done[index] += 1
            except Exception as exc:  # a transport error is a failed benchmark, loudly
                failure.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=config["seconds"] + 120)
    wall = time.perf_counter() - (marks.get("wall") or 0.0)
    end_cpu = cpu_seconds(config["server_pid"])
    if failure:
        return {"error": failure[0]}
    if any(thread.is_alive() for thread in threads):
        return {"error": "load threads did not finish in time"}
    start_cpu = marks.get("server_cpu")
    ordered = sorted(itertools.chain.from_iterable(latencies))

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0

    return {"requests": sum(done), "seconds": wall,
            "server_cpu": end_cpu - start_cpu if end_cpu is not None and start_cpu is not None
            else None,
            "client_cpu": time.process_time() - (marks.get("client_cpu") or 0.0),
            "p50_ms": percentile(0.5) * 1000, "p99_ms": percentile(0.99) * 1000,
            "exhausted": sum(done) == len(bodies) - warmup}


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    import httpx

    if config["kind"] == "events":
        bodies = build_batches(config["batches"], config["tag"], 48)

        def check_batch(response: httpx.Response) -> str | None:
            if response.status_code != 201:
                return f"POST /events answered {response.status_code}: {response.text[:400]}"
            if response.json().get("accepted") != BATCH:
                return f"POST /events did not accept every event: {response.text[:400]}"
            return None

        return _drive(config, bodies, "/api/v1/events", config["warmup"], check_batch)

    bodies = build_identify_bodies(config["calls"], config["tag"], 49)

    def check_identify(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return f"POST /customers/identify answered {response.status_code}: " \
                   f"{response.text[:400]}"
        return None

    return _drive(config, bodies, "/api/v1/customers/identify", config["warmup"],
                  check_identify)


# --------------------------------------------------------------------------------------------
# The raw floor (a child process)
# --------------------------------------------------------------------------------------------

def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # The same settings omniloop gives its SQLite connections.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    """Copy omniloop's database without the run's events, then insert those very rows."""
    columns = ", ".join(EVENT_COLUMNS)
    like = f"{RUN_PREFIX}-%"
    with contextlib.closing(_connect(config["source"])) as source:
        rows = source.execute(f"SELECT {columns} FROM events WHERE client_event_id LIKE ? "
                              "ORDER BY rowid", (like,)).fetchall()
        with contextlib.closing(sqlite3.connect(config["floor"])) as target:
            source.backup(target)
    with contextlib.closing(_connect(config["floor"])) as conn:
        conn.execute("DELETE FROM events WHERE client_event_id LIKE ?", (like,))
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with contextlib.closing(_connect(config["floor"])) as conn:
        sql = f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        cpu, begin = time.process_time(), time.perf_counter()
        for start in range(0, len(rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany(sql, rows[start:start + BATCH])
            conn.execute("COMMIT")
        wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
        stored = conn.execute("SELECT count(*) FROM events WHERE client_event_id LIKE ?",
                              (like,)).fetchone()[0]
    with contextlib.closing(_connect(config["source"])) as source:
        sizes = {table: source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("events", "customers", "customer_identities")}
    return {"rows": len(rows), "stored": stored, "seconds": wall, "cpu": cpu, "sizes": sizes}


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
    floor_rows: int
    floor_seconds: float
    floor_cpu: float
    identify_calls: int
    identify_seconds: float
    identify_server_cpu: float | None
    identify_client_cpu: float
    identify_p50_ms: float
    identify_p99_ms: float
    sizes: dict[str, int]


def run(args: argparse.Namespace, children: Children, tmp: Path) -> Figures:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir),
                      "OMNILOOP_DATABASE_URL": f"sqlite:///{db_path.as_posix()}",
                      "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print("seeding …", file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {"url": f"sqlite:///{db_path.as_posix()}"}, env,
                        data_dir, timeout=120)
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe="/api/v1/events/types")
    try:
        server.wait_ready({"Authorization": f"Bearer {seeded['api_key']}"})
        base = {"base_url": server.base_url, "api_key": seeded["api_key"],
                "server_pid": server.process.pid, "connections": args.connections,
                "tag": "1"}
        print(f"POST /events: {args.batches} batches of {BATCH:,} over {args.connections} "
              "connections …", file=sys.stderr, flush=True)
        events = run_child(children, __file__, "_load", {
            **base, "kind": "events", "batches": args.batches + args.warmup,
            "warmup": args.warmup, "seconds": args.seconds},
            child_env({}), tmp, timeout=args.seconds + 180, cpu=1)
        if "error" in events:
            raise SystemExit(f"FAILED: POST /events: {events['error']}\nserver log tail:\n"
                             f"{server.log.read_text(errors='replace')[-2000:]}")
        print("POST /customers/identify …", file=sys.stderr, flush=True)
        identify = run_child(children, __file__, "_load", {
            **base, "kind": "identify", "calls": args.identify_calls + 50, "warmup": 50,
            "seconds": args.identify_seconds, "connections": args.identify_connections},
            child_env({}), tmp, timeout=args.identify_seconds + 180, cpu=1)
        if "error" in identify:
            raise SystemExit(f"FAILED: identify: {identify['error']}\nserver log tail:\n"
                             f"{server.log.read_text(errors='replace')[-2000:]}")
    finally:
        server.stop()
    print("raw floor …", file=sys.stderr, flush=True)
    floor = run_child(children, __file__, "_floor", {"source": str(db_path),
                                            "floor": str(tmp / "floor.db")},
                       child_env({}), tmp, timeout=300, cpu=0)
    expected = (args.warmup + events["requests"]) * BATCH
    if floor["rows"] != expected or floor["stored"] != expected:
        raise SystemExit(f"FAILED: omniloop stored {floor['rows']:,} run events and the floor "
                         f"{floor['stored']:,}; expected {expected:,}")
    return Figures(
        events=events["requests"] * BATCH, events_seconds=events["seconds"],
        events_server_cpu=events["server_cpu"], events_client_cpu=events["client_cpu"],
        batch_p50_ms=events["p50_ms"], batch_p99_ms=events["p99_ms"],
        floor_rows=floor["rows"], floor_seconds=floor["seconds"], floor_cpu=floor["cpu"],
        identify_calls=identify["requests"], identify_seconds=identify["seconds"],
        identify_server_cpu=identify["server_cpu"], identify_client_cpu=identify["client_cpu"],
        identify_p50_ms=identify["p50_ms"], identify_p99_ms=identify["p99_ms"],
        sizes=floor["sizes"])


def report(f: Figures, args: argparse.Namespace, pinned: bool, load: tuple[float, float] | None,
           markdown: bool) -> str:
    rate = f.events / f.events_seconds
    floor_rate = f.floor_rows / f.floor_seconds
    calls = f.identify_calls / f.identify_seconds
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
        ("POST /api/v1/customers/identify", f"{calls:,.0f} calls/s",
         f"{us(f.identify_server_cpu, f.identify_calls)} µs/call",
         f"p50 {f.identify_p50_ms:.1f} ms, p99 {f.identify_p99_ms:.1f} ms; "
         f"{f.identify_calls:,} calls in {f.identify_seconds:.1f} s"),
    ]
    header = ("what", "throughput", "server CPU", "notes")
    if markdown:
        table = ["| " + " | ".join(header) + " |", "|---|---:|---:|---|"]
        table += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        table = ["  ".join(c.ljust(widths[i]) if i in (0, 3) else c.rjust(widths[i])
                           for i, c in enumerate(r)) for r in (header, *rows)]
        table.insert(1, "  ".join("-" * w for w in widths))
    lines = [
        f"omniloop event ingestion: {BATCH:,}-event batches over {args.connections} keep-alive "
        f"connections; identify over {args.identify_connections}; "
        f"{'server and load process pinned to a CPU each' if pinned else 'unpinned'}",
        f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, fastapi {version('fastapi')}, "
        f"pydantic {version('pydantic')}, SQLAlchemy {version('sqlalchemy')}, "
        f"uvicorn {version('uvicorn')}",
    ]
    if load is not None:
        lines.append(f"1-minute load average before / after: {load[0]:.2f} / {load[1]:.2f} "
                     "(anything else running skews the figures)")
    cpu_ratio = (f"; omniloop server CPU per event ÷ floor's: "
                 f"{f.events_server_cpu / f.events / (f.floor_cpu / f.floor_rows):.1f}×"
                 if f.events_server_cpu is not None and f.floor_cpu else "")
    lines += ["", *table, "",
              f"floor ÷ omniloop: {floor_rate / rate:.1f}× (events/s){cpu_ratio}",
              f"database after the run: {f.sizes['events']:,} events, "
              f"{f.sizes['customers']:,} profiles, {f.sizes['customer_identities']:,} "
              "identities (identify ran against these)",
              f"server CPU: {f.events_server_cpu / batches * 1000:,.1f} ms per batch; "
              f"load process CPU {f.events_client_cpu / f.events_seconds:.0%} of wall"
              if f.events_server_cpu is not None else "server CPU: n/a",
              "",
              f"{'PASS' if rate >= TARGET_EVENTS else 'FAIL'}: event ingestion "
              f"{rate:,.0f} events/s (target ≥ {TARGET_EVENTS:,.0f})",
              f"{'PASS' if calls >= TARGET_IDENTIFY else 'FAIL'}: identify "
              f"{calls:,.0f} calls/s (target ≥ {TARGET_IDENTIFY:,.0f})"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Event ingestion through omniloop's HTTP API (1,000-event batches) "
                    "against bare sqlite3 executemany of the same rows, and identify calls/s; "
                    "everything on 127.0.0.1, on a fresh SQLite database.")
    parser.add_argument("--batches", type=int, default=300,
                        help="measured batches at most (default: 300 = 300,000 events)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="stop sending batches after this long (default: 15)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="batches sent first, not measured (default: 3)")
    parser.add_argument("--connections", type=int, default=2,
                        help="keep-alive connections posting batches (default: 2: SQLite "
                             "writes one batch at a time; a second connection lets the "
                             "server read the next body meanwhile)")
    parser.add_argument("--identify-seconds", type=float, default=6.0,
                        help="measured duration of the identify run (default: 6)")
    parser.add_argument("--identify-calls", type=int, default=30_000,
                        help="identify calls at most (default: 30000)")
    parser.add_argument("--identify-connections", type=int, default=4,
                        help="keep-alive connections calling identify (default: 4)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server to the first CPU and the load process to "
                             "the second")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table as Markdown (for docs/benchmarks.md)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed (by default only "
                             "a failed run does)")
    args = parser.parse_args(argv)
    if (args.batches < 1 or args.seconds <= 0 or args.warmup < 0 or args.connections < 1
            or args.identify_seconds <= 0 or args.identify_calls < 1
            or args.identify_connections < 1):
        parser.error("counts must be >= 1 (--warmup >= 0) and durations > 0")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    children = Children(pin=not args.no_pin)
    started = time.monotonic()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        with tempfile.TemporaryDirectory(prefix="omniloop-bench-events-") as tmp_name:
            figures = run(args, children, Path(tmp_name))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
    load = (load_before, os.getloadavg()[0]) if load_before is not None else None
    print(report(figures, args, children.pin, load, args.markdown))
    print(f"total {time.monotonic() - started:.0f} s")
    met = (figures.events / figures.events_seconds >= TARGET_EVENTS
           and figures.identify_calls / figures.identify_seconds >= TARGET_IDENTIFY)
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load", "_floor"):
        task = {"_seed": seed, "_load": run_load, "_floor": run_floor}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
