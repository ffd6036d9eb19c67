"""Identify calls/s through the HTTP API, side by side with a raw floor doing the same SQL.

omniloop runs as a real uvicorn process on 127.0.0.1 (one worker, no access log, as
`omniloop serve` runs it) on a fresh SQLite database in a temporary directory, seeded through
the service functions with one brand, 4 stores, a `pos` API key and a pool of known
customers: 20,000 phones and 20,000 devices, each with a profile of its own (stored by
ingesting one event for each). A separate load process calls
`POST /api/v1/customers/identify` over keep-alive connections, with the API key, one phone
per call: half of them known (typed as people type them: `0912-345-678`,
`+886 912 345 678`, `0912345678`), half never seen (each creates a profile and an identity).
Every answer must be `200`, and every 20th answer's body must name the customer and the
phone in E.164, or the run fails. The bodies are built before the clock starts.

The raw floor, in the same run: bare FastAPI (no middleware, no authentication, no Pydantic,
no ORM) on a copy of the seeded database, a sync route doing the same work with the stdlib
`sqlite3` module: the phone normalised by a regular expression (Taiwanese numbers only),
BEGIN IMMEDIATE, the identity and its profile in one SELECT, then for a known phone the
profile's identities, for a new one an INSERT of the profile and one of the identity,
COMMIT, and `json.dumps` of the same answer. One connection with omniloop's write settings
(core/db.py), behind a lock, as omniloop's single pooled write connection. The floor
receives the very same calls.

On Linux with 2 or more CPUs the servers run on the first CPU and the load process on the
second (--no-pin to turn this off). Server CPU per call is read from /proc.

A PASS/FAIL line compares with the target (2,000 calls/s); the exit status is 1 only for a
failed run, or with --strict for a missed target too.

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`; the floor app
is `bench_identify:floor_app` (uvicorn --factory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import sqlite3
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from harness import (
    Children,
    Server,
    add_report_options,
    child_env,
    drive,
    load_line,
    machine_line,
    post_requests,
    render_table,
    run_bench,
    run_child,
)

BENCH_DIR = Path(__file__).resolve().parent
TARGET_CALLS = 2_000.0
KNOWN_PHONES = 20_000
KNOWN_DEVICES = 20_000
CHECK_EVERY = 20
PATH = "/api/v1/customers/identify"


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


def e164(n: int) -> str:
    return "+886" + phone_digits(n)[1:]


def build_calls(count: int, seed_value: int) -> list[tuple[bytes, str]]:
    """(body, the phone in E.164) per call: even calls a new phone, odd calls a known one."""
    rng = random.Random(seed_value)
    calls = []
    for n in range(count):
        number = KNOWN_PHONES + n if n % 2 == 0 else rng.randrange(KNOWN_PHONES)
        body = json.dumps({"identities": [{"kind": "phone",
                                           "value": phone_as_typed(number, rng.randrange(3))}],
                           "source": "bench"}).encode()
        calls.append((body, e164(number)))
    return calls


# --------------------------------------------------------------------------------------------
# Seeding (a child process, with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

def seed(config: dict[str, Any]) -> dict[str, Any]:
    from bench_event_ingest import seed as seed_events

    return seed_events({"url": config["url"], "scope": "pos", "devices": KNOWN_DEVICES,
                        "phones": KNOWN_PHONES})


# --------------------------------------------------------------------------------------------
# The floor app (imported by uvicorn in the server process; it never imports omniloop)
# --------------------------------------------------------------------------------------------

_NOT_DIGITS = re.compile(r"\D")
_PROFILE = ("id, name, birthday, gender, home_store_id, language, tags, created_at, "
            "updated_at, erased_at")


def _normalised_phone(value: str) -> str:
    digits = _NOT_DIGITS.sub("", value)
    return "+" + digits if value.lstrip().startswith("+") else "+886" + digits[1:]


def _iso(value: str | None) -> str | None:
    return value.replace(" ", "T") if value else value


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _new_id() -> str:
    return secrets.token_hex(13).upper()[:26]


def floor_app() -> FastAPI:
    connection = sqlite3.connect(os.environ["BENCH_FLOOR_DB"], isolation_level=None,
                                 check_same_thread=False)
    for pragma in json.loads(os.environ["BENCH_FLOOR_PRAGMAS"]):
        connection.execute(f"PRAGMA {pragma}")
    tenant_id = connection.execute("SELECT id FROM tenants").fetchone()[0]
    lock = threading.Lock()  # one writer at a time, as omniloop's single write connection
    app = FastAPI()

    @app.post(PATH)
    def identify(body: dict[str, Any]) -> Response:
        phone = _normalised_phone(body["identities"][0]["value"])
        source = body.get("source", "api")
        with lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute(
                    f"SELECT {', '.join('c.' + c for c in _PROFILE.split(', '))} "
                    "FROM customer_identities i JOIN customers c ON c.tenant_id = i.tenant_id "
                    "AND c.id = i.customer_id WHERE i.tenant_id = ? AND i.kind = 'phone' "
                    "AND i.value = ?", (tenant_id, phone)).fetchone()
                if row is None:
                    now = _now()
                    customer_id, identity_id = _new_id(), _new_id()
                    connection.execute(
                        "INSERT INTO customers (tenant_id, id, tags, created_at, updated_at) "
                        "VALUES (?, ?, '[]', ?, ?)", (tenant_id, customer_id, now, now))
                    connection.execute(
                        "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, "
                        "value, source, created_at) VALUES (?, ?, ?, 'phone', ?, ?, ?)",
                        (tenant_id, identity_id, customer_id, phone, source, now))
                    row = (customer_id, None, None, None, None, None, "[]", now, now, None)
                    identities = [(identity_id, "phone", phone, source, now)]
                    created = True
                else:
                    identities = connection.execute(
                        "SELECT id, kind, value, source, created_at FROM customer_identities "
                        "WHERE tenant_id = ? AND customer_id = ?", (tenant_id, row[0])).fetchall()
                    created = False
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        customer = dict(zip(_PROFILE.split(", "), row, strict=True))
        customer["tags"] = json.loads(customer["tags"])
        for name in ("created_at", "updated_at", "erased_at"):
            customer[name] = _iso(customer[name])
        customer["identities"] = [
            {"id": i, "kind": k, "value": v, "source": s, "created_at": _iso(at)}
            for i, k, v, s, at in sorted(identities, key=lambda r: (r[1], r[4], r[0]))]
        return Response(json.dumps({"customer": customer, "created": created, "merged": []},
                                   ensure_ascii=False).encode(),
                        media_type="application/json")

    @app.get("/ready")
    def ready() -> Response:
        return Response(b"{}", media_type="application/json")

    return app


# --------------------------------------------------------------------------------------------
# Load generator (a child process)
# --------------------------------------------------------------------------------------------

def run_load(config: dict[str, Any]) -> dict[str, Any]:
    calls = build_calls(config["calls"], 49)
    headers = {"Content-Type": "application/json"}
    if config.get("api_key"):
        headers["Authorization"] = f"Bearer {config['api_key']}"
    requests = post_requests(config["base_url"], PATH, headers, [body for body, _ in calls])
    phones = {phone for _, phone in calls}
    answered = [0]

    def check(status: int, body: bytes) -> str | None:
        answered[0] += 1
        if status != 200:
            return f"POST {PATH} answered {status}: {body[:400]!r}"
        if answered[0] % CHECK_EVERY == 1:  # answers come back out of order over several
            try:                            # connections: the phone must be one of the run's
                customer = json.loads(body)["customer"]
                values = {i["value"] for i in customer["identities"]}
            except (ValueError, KeyError, TypeError):
                return f"POST {PATH}: unexpected body {body[:400]!r}"
            if not customer.get("id") or not values & phones:
                return f"POST {PATH}: unexpected body {body[:400]!r}"
        return None

    return drive(config["base_url"], requests, warmup=config["warmup"],
                 connections=config["connections"], seconds=config["seconds"], check=check,
                 server_pid=config["server_pid"])


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    calls: int
    seconds: float
    server_cpu: float | None
    client_cpu: float
    p50_ms: float
    p99_ms: float


def _measure(children: Children, server: Server, label: str, api_key: str | None,
             args: argparse.Namespace, tmp: Path) -> Row:
    print(f"{label} …", file=sys.stderr, flush=True)
    outcome = run_child(children, __file__, "_load", {
        "base_url": server.base_url, "api_key": api_key, "server_pid": server.process.pid,
        "connections": args.connections, "calls": args.calls + args.warmup,
        "warmup": args.warmup, "seconds": args.seconds}, child_env({}), tmp,
        timeout=args.seconds + 180, cpu=1)
    if "error" in outcome:
        raise SystemExit(f"FAILED: {label}: {outcome['error']}\nserver log tail:\n"
                         f"{server.log.read_text(errors='replace')[-2000:]}")
    return Row(label, outcome["requests"], outcome["seconds"], outcome["server_cpu"],
               outcome["client_cpu"], outcome["p50_ms"], outcome["p99_ms"])


def _pragmas() -> list[str]:
    from omniloop.core.db import SQLITE_WAL_AUTOCHECKPOINT, SQLITE_WRITE_CACHE_KIB

    return ["journal_mode=WAL", "foreign_keys=ON", "busy_timeout=5000", "synchronous=NORMAL",
            f"wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}",
            f"cache_size=-{SQLITE_WRITE_CACHE_KIB}"]


def run(args: argparse.Namespace, children: Children,
        tmp: Path) -> tuple[list[Row], dict[str, int]]:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print("seeding …", file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {"url": url}, env, data_dir, timeout=300)
    floor_db = tmp / "floor.db"
    with sqlite3.connect(db_path) as source, sqlite3.connect(floor_db) as target:
        source.backup(target)
    with sqlite3.connect(db_path) as source:
        sizes = {table: source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("customers", "customer_identities", "events")}
    rows = []
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe="/api/v1/events/types")
    try:
        server.wait_ready({"Authorization": f"Bearer {seeded['api_key']}"})
        rows.append(_measure(children, server, "POST /api/v1/customers/identify (omniloop)",
                             seeded["api_key"], args, tmp))
    finally:
        server.stop()
    floor_env = child_env({"BENCH_FLOOR_DB": str(floor_db),
                           "BENCH_FLOOR_PRAGMAS": json.dumps(_pragmas())})
    floor = Server(children, "floor", "bench_identify:floor_app", floor_env, tmp,
                   tmp / "floor.log", probe="/ready", app_dir=BENCH_DIR)
    try:
        floor.wait_ready({})
        rows.append(_measure(children, floor, "raw floor (FastAPI + sqlite3)", None, args, tmp))
    finally:
        floor.stop()
    return rows, sizes


def report(rows: list[Row], sizes: dict[str, int], args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None, markdown: bool) -> str:
    header = ("what", "calls/s", "server CPU", "notes")
    table_rows = []
    for row in rows:
        cpu = (f"{row.server_cpu / row.calls * 1e6:,.0f} µs/call"
               if row.server_cpu is not None and row.calls else "n/a")
        table_rows.append((row.label, f"{row.calls / row.seconds:,.0f}", cpu,
                           f"p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms; "
                           f"{row.calls:,} calls in {row.seconds:.1f} s; load process CPU "
                           f"{row.client_cpu / row.seconds:.0%}"))
    table = render_table(header, table_rows, markdown, left=(0, 3))
    omniloop, floor = rows[0], rows[1]
    rate, floor_rate = omniloop.calls / omniloop.seconds, floor.calls / floor.seconds
    lines = [
        f"omniloop identify: one phone per call, half known, half new, over {args.connections} "
        f"keep-alive connections; "
        f"{'servers and load process pinned to a CPU each' if pinned else 'unpinned'}",
        machine_line("fastapi", "pydantic", "SQLAlchemy", "uvicorn"),
        f"database before the run: {sizes['customers']:,} profiles, "
        f"{sizes['customer_identities']:,} identities, {sizes['events']:,} events",
    ]
    if load is not None:
        lines.append(load_line(load))
    cpu_ratio = ""
    if omniloop.server_cpu is not None and floor.server_cpu:
        per_call = omniloop.server_cpu / omniloop.calls
        cpu_ratio = (f"; server CPU per call ÷ floor's: "
                     f"{per_call / (floor.server_cpu / floor.calls):.1f}×")
    lines += ["", *table, "",
              f"omniloop ÷ floor: {rate / floor_rate:.2f} in calls/s (floor ÷ omniloop "
              f"{floor_rate / rate:.1f}×){cpu_ratio}", "",
              f"{'PASS' if rate >= TARGET_CALLS else 'FAIL'}: identify {rate:,.0f} calls/s "
              f"(target ≥ {TARGET_CALLS:,.0f})"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="POST /api/v1/customers/identify through omniloop's HTTP API against a "
                    "bare FastAPI + sqlite3 floor doing the same SQL, on 127.0.0.1, on a "
                    "fresh SQLite database.")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="measured duration per server (default: 6)")
    parser.add_argument("--calls", type=int, default=60_000,
                        help="measured calls at most per server (default: 60000)")
    parser.add_argument("--warmup", type=int, default=300,
                        help="calls sent first, one at a time, not measured (default: 300)")
    parser.add_argument("--connections", type=int, default=4,
                        help="keep-alive connections (default: 4)")
    add_report_options(parser, pinned="the servers to the first CPU and the load process "
                                      "to the second")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.calls < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("counts must be >= 1 (--warmup >= 0) and durations > 0")
    if args.calls + args.warmup > 900_000:
        parser.error("at most 900,000 calls: the new phones must stay valid numbers")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    found = run_bench(
        "omniloop-bench-identify-", pin=not args.no_pin,
        work=lambda children, tmp: run(args, children, tmp),
        report=lambda result, pin, load: report(*result, args, pin, load, args.markdown))
    if found is None:
        return 130
    rows, _sizes = found
    met = rows[0].calls / rows[0].seconds >= TARGET_CALLS
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load"):
        task = seed if sys.argv[1] == "_seed" else run_load
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
