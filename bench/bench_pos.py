"""POS coupon validation and redemption through the HTTP API, against a bare-sqlite3 floor.

omniloop runs as `omniloop serve` runs it: one uvicorn process (`omniloop.app:create_app`,
uvloop + httptools, here without the access log), on 127.0.0.1, on a fresh SQLite database
in a temporary directory, seeded through the service functions with one brand, one store
(`TPE01`), a `pos` API key, a launched amount_off campaign (NT$50 off from NT$300, quota and
budget set so that both conditional checks run) holding N unique codes made with
`campaigns.codes.generate_codes`, and a launched shared-code campaign (`BENCH100`).

A separate load process (pinned to the second CPU; the server gets the first) keeps 32
keep-alive HTTP/1.1 connections busy, each sending its next request as soon as the previous
answer is in (a closed loop: 32 POS terminals with no think time; the targets' condition).
Then the same requests again at a fixed pace (--paced-rate, 100/s in all by default, taking
turns over the 32 connections), each request's latency counted from when it was due, so
that a server falling behind shows it: what a till sees at a busy but not saturating hour.
The load process is a small asyncio client on uvloop speaking just the HTTP/1.1 this needs,
because httpx costs its process about 250 µs of CPU per request; its CPU use is reported
(a few per cent of its core), so it is not the bottleneck and wrk is not needed. Every
answer is parsed and checked; an unexpected one fails the run.

  validate  POST /api/v1/pos/validate: each request a random existing code (9 in 10 a unique
            code, 1 in 10 the shared code), basket total above the minimum spend; every answer
            must be 200 with `valid: true` and the campaign's discount.
  redeem    POST /api/v1/pos/redeem: each request a distinct unused unique code (the closed
            loop and the paced phase each have their own half of the codes) with its own
            Idempotency-Key; every answer must be 201 for that code. Afterwards the database
            is checked: the campaign's redeemed_count, the redemptions, the redeemed coupons
            and the coupon_redeemed events all equal the number of 201s, the codes redeemed
            are exactly those answered 201, and no coupon was redeemed twice.

The raw floor, in the same run, on a copy of the seeded database (same schema and indexes,
taken before the server started): bare `sqlite3`, one connection, in one process, the same
statements per redemption (look up the idempotency key, look up the coupon by code, the
conditional UPDATE of the coupon `WHERE status IN ('available', 'claimed')`, the conditional
UPDATE of the campaign's counters with the quota and budget checks, INSERT the redemption,
INSERT the event), each redemption in its own BEGIN IMMEDIATE … COMMIT, with the PRAGMAs read
from the product's own write connection (journal mode, synchronous, WAL auto-checkpoint, page
cache, foreign keys). It runs once with the product's `synchronous` and once with
`synchronous=FULL` (durable across power loss in WAL mode, which NORMAL is not). No HTTP, no
authentication, no store look-up, no ORM.

Targets (the issue): validate p99 ≤ 25 ms and redeem p99 ≤ 40 ms at 32 clients, redemption
throughput ≥ 1,000/s. PASS/FAIL lines are printed; the exit status is 1 only for a failed
run, or with --strict for a missed target too.

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`, `_floor <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import (
    Check,
    Children,
    Phase,
    Server,
    add_report_options,
    child_env,
    copy_database,
    load_line,
    machine_line,
    phase_from,
    render_table,
    run_bench,
    run_child,
    run_loop,
    seed_brand,
    timed_phase,
)

STORE_CODE = "TPE01"
SHARED_CODE = "BENCH100"
CODE_PATTERN = "POS-####-####"
UNIQUE_DISCOUNT = 5000  # NT$50 off …
MIN_SPEND = 30000  # … from NT$300
SHARED_DISCOUNT = 10000
SHARED_SHARE = 0.1  # of validations
TARGET_VALIDATE_P99_MS = 25.0
TARGET_REDEEM_P99_MS = 40.0
TARGET_REDEEM_RATE = 1000.0
# Anchors quoted in the issue (a hosted coupon API's published figures), for the table.
ANCHOR = {"validate": "120 ms mean / 200 ms p95", "redeem": "200 ms mean / 500 ms p95"}
PRAGMAS = ("journal_mode", "synchronous", "wal_autocheckpoint", "cache_size", "foreign_keys",
           "busy_timeout")
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


# --------------------------------------------------------------------------------------------
# Seeding (a child process, with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

def seed(config: dict[str, Any]) -> dict[str, Any]:
    """Migrate a fresh database: a brand, a store, a pos key, the two campaigns, the codes."""
    from sqlalchemy import select

    from omniloop.campaigns import service
    from omniloop.campaigns.codes import generate_codes, parse_pattern
    from omniloop.campaigns.models import Coupon
    from omniloop.campaigns.schemas import CampaignCreate
    from omniloop.core.clock import utcnow
    from omniloop.core.db import set_database

    codes_wanted: int = config["codes"]
    brand = seed_brand(config["url"], [{"code": STORE_CODE, "name": "信義門市"}], ["pos"],
                       key_name="bench pos")
    database, tenant_id, actor = brand.database, brand.tenant_id, brand.actor
    store_id = brand.store_ids[0]
    now = utcnow()
    window = {"starts_at": (now - timedelta(hours=1)).isoformat(),
              "ends_at": (now + timedelta(days=30)).isoformat()}
    with database.unit_of_work() as session:
        unique = service.create_campaign(session, actor, CampaignCreate.model_validate({
            "name": "秋季滿 300 折 50", "kind": "amount_off", "value_minor": UNIQUE_DISCOUNT,
            "min_spend_minor": MIN_SPEND, "quota": codes_wanted,
            "budget_minor": codes_wanted * UNIQUE_DISCOUNT, **window}))
        service.launch_campaign(session, actor, unique.id)
        shared = service.create_campaign(session, actor, CampaignCreate.model_validate({
            "name": "週年慶折 100", "kind": "amount_off", "value_minor": SHARED_DISCOUNT,
            "code_mode": "shared", "shared_code": SHARED_CODE, "quota": 1_000_000, **window}))
        service.launch_campaign(session, actor, shared.id)
        unique_id, shared_id = unique.id, shared.id
    with database.engine.begin() as connection:
        stored = generate_codes(connection, tenant_id=tenant_id, campaign_id=unique_id,
                                batch_id=None, pattern=parse_pattern(CODE_PATTERN),
                                count=codes_wanted)
    with database.read_sessionmaker() as session:
        codes = list(session.scalars(select(Coupon.code).where(
            Coupon.tenant_id == tenant_id, Coupon.campaign_id == unique_id)
            .order_by(Coupon.code)))
    set_database(None)
    database.dispose()
    if stored != codes_wanted or len(codes) != codes_wanted:
        raise SystemExit(f"generate_codes stored {stored:,} codes, {codes_wanted:,} asked for")
    Path(config["codes_file"]).write_text("\n".join(str(code) for code in codes))
    # The floors' copies, taken before the server changes anything.
    for target_path in config["floor_copies"]:
        copy_database(config["url"], target_path)
    return {"tenant_id": tenant_id, "store_id": store_id, "api_key": brand.api_key,
            "unique_campaign_id": unique_id, "shared_campaign_id": shared_id}


# --------------------------------------------------------------------------------------------
# Load generator (a child process): a lean HTTP/1.1 client on one asyncio loop
# --------------------------------------------------------------------------------------------

def _request(host: str, path: str, api_key: str, body: dict[str, Any],
             extra: str = "") -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def _validate_requests(config: dict[str, Any], host: str,
                       codes: list[str]) -> Callable[[], tuple[bytes, Check]]:
    rng = random.Random(config["seed"])

    def check_for(expected: int) -> Check:
        def check(status: int, body: bytes) -> str | None:
            if status != 200:
                return f"validate answered {status}: {body[:300]!r}"
            answer = json.loads(body)
            if answer.get("valid") is not True or answer.get("discount_minor") != expected:
                return f"validate: unexpected answer {body[:300]!r}"
            return None
        return check

    unique_check, shared_check = check_for(UNIQUE_DISCOUNT), check_for(SHARED_DISCOUNT)

    def next_request() -> tuple[bytes, Check]:
        shared = rng.random() < SHARED_SHARE
        code = SHARED_CODE if shared else rng.choice(codes)
        total = rng.randrange(MIN_SPEND + 100, 200_000, 100)
        return (_request(host, "/api/v1/pos/validate", config["api_key"],
                         {"code": code, "store_code": STORE_CODE, "basket_total_minor": total}),
                shared_check if shared else unique_check)

    return next_request


def _redeem_requests(config: dict[str, Any], host: str, codes: list[str],
                     redeemed: list[str]) -> Callable[[], tuple[bytes, Check]]:
    rng = random.Random(config["seed"])
    order = codes[config["share"]::2]  # each redeem phase has its own half of the codes
    rng.shuffle(order)
    pending = iter(order)
    sequence = iter(range(len(order)))

    def next_request() -> tuple[bytes, Check]:
        code = next(pending, None)
        if code is None:
            raise RuntimeError(f"all {len(order):,} codes redeemed: run with more --codes")
        n = next(sequence)
        total = rng.randrange(MIN_SPEND + 100, 200_000, 100)

        def check(status: int, body: bytes) -> str | None:
            if status != 201:
                return f"redeem {code} answered {status}: {body[:300]!r}"
            answer = json.loads(body)
            if (answer.get("code") != code or answer.get("discount_minor") != UNIQUE_DISCOUNT
                    or answer.get("status") != "redeemed"):
                return f"redeem {code}: unexpected answer {body[:300]!r}"
            redeemed.append(code)
            return None

        key = f"bench-{config['seed']}-{n}"
        return (_request(host, "/api/v1/pos/redeem", config["api_key"],
                         {"code": code, "store_code": STORE_CODE, "basket_total_minor": total},
                         f"Idempotency-Key: {key}\r\n"), check)

    return next_request


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """Send over `connections` keep-alive connections: `warmup` seconds unmeasured, then
    `seconds`. Without a `rate`, each connection sends its next request as soon as the answer
    is in (a closed loop). With one, requests are due at `rate` per second in all, in turn
    over the connections, and each request's latency counts from when it was due, so a
    server that falls behind shows it (no coordinated omission)."""
    parts = urlsplit(config["base_url"])
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("the load generator only talks to 127.0.0.1:<port>")
    host, port = parts.hostname, parts.port
    codes = Path(config["codes_file"]).read_text().split("\n")
    redeemed: list[str] = []
    if config["kind"] == "validate":
        next_request = _validate_requests(config, parts.netloc, codes)
    else:
        next_request = _redeem_requests(config, parts.netloc, codes, redeemed)
    server_pid: int = config["server_pid"]

    async def main() -> dict[str, Any]:
        opened = [await asyncio.open_connection(host, port)
                  for _ in range(config["connections"])]
        try:
            outcome = await timed_phase(opened, next_request, warmup=config["warmup"],
                                        seconds=config["seconds"], rate=config.get("rate"),
                                        server_pid=server_pid)
        finally:
            for _, writer in opened:
                writer.close()
        if "error" in outcome:
            return outcome
        return {**outcome, "redeemed": sorted(redeemed)}

    return run_loop(main)


# --------------------------------------------------------------------------------------------
# The raw floor (a child process)
# --------------------------------------------------------------------------------------------

def product_pragmas(path: str) -> dict[str, Any]:
    """The PRAGMAs of omniloop's own SQLite write connection to this database file."""
    from sqlalchemy import text

    from omniloop.core.db import Database

    database = Database(f"sqlite:///{path}")
    try:
        with database.engine.connect() as connection:
            return {name: connection.execute(text(f"PRAGMA {name}")).scalar()
                    for name in PRAGMAS}
    finally:
        database.dispose()


def _sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it."""
    return value.replace(tzinfo=None).isoformat(sep=" ")


def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    """The same conditional updates and inserts per redemption with bare sqlite3."""
    pragmas = product_pragmas(config["db"])
    if config.get("synchronous") is not None:
        pragmas["synchronous"] = config["synchronous"]
    conn = sqlite3.connect(config["db"], isolation_level=None)
    for name in PRAGMAS:
        conn.execute(f"PRAGMA {name}={pragmas[name]}")
    settings = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS}
    tenant_id, campaign_id, store_id = (config["tenant_id"], config["campaign_id"],
                                        config["store_id"])
    codes = Path(config["codes_file"]).read_text().split("\n")
    random.Random(config["seed"]).shuffle(codes)
    codes = codes[:config["count"]]
    label = "API key bench pos (olk_…)"
    insert_redemption = (
        "INSERT INTO redemptions (tenant_id, id, campaign_id, coupon_id, code, store_id, "
        "customer_id, staff_label, actor_label, idempotency_key, request_digest, basket_id, "
        "basket_total_minor, discount_minor, order_id, status, redeemed_at, voided_at, "
        "voided_by, void_reason) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, ?, ?, NULL, "
        "'redeemed', ?, NULL, NULL, NULL)")
    insert_event = (
        "INSERT INTO events (tenant_id, id, client_event_id, customer_id, type, channel, source, "
        "store_id, campaign_id, properties, occurred_at, received_at) "
        "VALUES (?, ?, ?, NULL, 'coupon_redeemed', 'offline', 'pos', ?, ?, ?, ?, ?)")
    done = 0
    cpu, begin = time.process_time(), time.perf_counter()
    for n, code in enumerate(codes):
        now = _sqlite_time(datetime.now(UTC))
        key = f"floor-{n}"
        redemption_id, event_id = secrets.token_hex(13), secrets.token_hex(13)
        total = 50_000
        digest = hashlib.sha256(f"{code}|{STORE_CODE}|{total}".encode()).hexdigest()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT id FROM redemptions WHERE tenant_id = ? AND "
                            "idempotency_key = ?", (tenant_id, key)).fetchone() is not None:
                raise RuntimeError(f"idempotency key {key} taken")
            coupon = conn.execute("SELECT id, campaign_id, status FROM coupons WHERE "
                                  "tenant_id = ? AND code = ?", (tenant_id, code)).fetchone()
            if coupon is None or coupon[1] != campaign_id:
                raise RuntimeError(f"coupon {code} not found")
            taken = conn.execute(
                "UPDATE coupons SET status = 'redeemed', redeemed_at = ?, redemption_id = ? "
                "WHERE tenant_id = ? AND id = ? AND status IN ('available', 'claimed')",
                (now, redemption_id, tenant_id, coupon[0])).rowcount
            counted = conn.execute(
                "UPDATE campaigns SET redeemed_count = redeemed_count + 1, "
                "discount_minor = discount_minor + ?, updated_at = ? "
                "WHERE tenant_id = ? AND id = ? AND (quota IS NULL OR redeemed_count < quota) "
                "AND (budget_minor IS NULL OR discount_minor + ? <= budget_minor)",
                (UNIQUE_DISCOUNT, now, tenant_id, campaign_id, UNIQUE_DISCOUNT)).rowcount
            if taken != 1 or counted != 1:
                raise RuntimeError(f"coupon {code}: conditional update refused")
            conn.execute(insert_redemption, (
                tenant_id, redemption_id, campaign_id, coupon[0], code, store_id, label, label,
                key, digest, total, UNIQUE_DISCOUNT, now))
            properties = json.dumps({"redemption_id": redemption_id, "coupon_id": coupon[0],
                                     "discount_minor": UNIQUE_DISCOUNT})
            conn.execute(insert_event, (tenant_id, event_id, f"coupon_redeemed:{redemption_id}",
                                        store_id, campaign_id, properties, now, now))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += 1
        if time.perf_counter() - begin >= config["seconds"]:
            break
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
    redeemed = conn.execute("SELECT redeemed_count FROM campaigns WHERE tenant_id = ? AND "
                            "id = ?", (tenant_id, campaign_id)).fetchone()[0]
    conn.close()
    if redeemed != done:
        raise SystemExit(f"floor: redeemed_count {redeemed} after {done} redemptions")
    return {"redemptions": done, "seconds": wall, "cpu": cpu, "pragmas": settings}


# --------------------------------------------------------------------------------------------
# Checking the product's database after the run
# --------------------------------------------------------------------------------------------

def verify(db_path: Path, seeded: dict[str, Any], answered: list[str]) -> dict[str, int]:
    """Every 201 is one redemption, one redeemed coupon, one count, one event; no doubles."""
    tenant_id, campaign_id = seeded["tenant_id"], seeded["unique_campaign_id"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        def one(sql: str, *params: Any) -> int:
            return int(conn.execute(sql, params).fetchone()[0])

        found = {
            "redeemed_count": one("SELECT redeemed_count FROM campaigns WHERE tenant_id = ? "
                                  "AND id = ?", tenant_id, campaign_id),
            "discount_minor": one("SELECT discount_minor FROM campaigns WHERE tenant_id = ? "
                                  "AND id = ?", tenant_id, campaign_id),
            "redemptions": one("SELECT count(*) FROM redemptions WHERE tenant_id = ? AND "
                               "campaign_id = ? AND status = 'redeemed'", tenant_id, campaign_id),
            "redeemed_coupons": one(
                "SELECT count(*) FROM coupons c JOIN redemptions r ON r.tenant_id = c.tenant_id "
                "AND r.id = c.redemption_id AND r.coupon_id = c.id AND r.code = c.code "
                "WHERE c.tenant_id = ? AND c.campaign_id = ? AND c.status = 'redeemed'",
                tenant_id, campaign_id),
            "events": one("SELECT count(*) FROM events WHERE tenant_id = ? AND type = "
                          "'coupon_redeemed' AND campaign_id = ?", tenant_id, campaign_id),
            "coupons_redeemed_twice": one(
                "SELECT count(*) FROM (SELECT coupon_id FROM redemptions WHERE tenant_id = ? "
                "GROUP BY coupon_id HAVING count(*) > 1)", tenant_id),
        }
        stored = sorted(row[0] for row in conn.execute(
            "SELECT code FROM redemptions WHERE tenant_id = ? AND campaign_id = ?",
            (tenant_id, campaign_id)))
    n = len(answered)
    problems = [f"{name} = {value:,}, expected {n:,}" for name, value in found.items()
                if name not in ("discount_minor", "coupons_redeemed_twice") and value != n]
    if found["discount_minor"] != n * UNIQUE_DISCOUNT:
        problems.append(f"discount_minor = {found['discount_minor']:,}, expected "
                        f"{n * UNIQUE_DISCOUNT:,}")
    if found["coupons_redeemed_twice"]:
        problems.append(f"{found['coupons_redeemed_twice']} coupons redeemed twice")
    if stored != answered:
        problems.append("the redeemed codes in the database differ from those answered 201")
    if problems:
        raise SystemExit("FAILED: the database after the redemptions:\n  " + "\n  ".join(problems))
    return found


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Floor:
    redemptions: int
    seconds: float
    cpu: float
    pragmas: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.redemptions / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Figures:
    validate: Phase
    redeem: Phase
    validate_paced: Phase | None
    redeem_paced: Phase | None
    redeemed_total: int  # 201s including the warm-ups
    floor: Floor
    floor_full: Floor
    checked: dict[str, int]


def run(args: argparse.Namespace, children: Children, tmp: Path) -> Figures:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    codes_file = tmp / "codes.txt"
    floor_dbs = [tmp / "floor.db", tmp / "floor-full.db"]
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print(f"seeding ({args.codes:,} codes) …", file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {
        "url": url, "codes": args.codes, "codes_file": str(codes_file),
        "floor_copies": [str(path) for path in floor_dbs]}, env, data_dir, timeout=300)
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe="/api/v1/pos/qr-key")
    outcomes: dict[tuple[str, bool], dict[str, Any]] = {}
    try:
        server.wait_ready({"Authorization": f"Bearer {seeded['api_key']}"})
        base = {"base_url": server.base_url, "api_key": seeded["api_key"],
                "server_pid": server.process.pid, "connections": args.connections,
                "warmup": args.warmup, "seconds": args.seconds, "codes_file": str(codes_file)}
        # Validations first, while every code is unused; each redeem phase has its own half
        # of the codes. (kind, paced?, random seed, half of the codes)
        phases = [("validate", False, 1, 0), ("validate", True, 2, 0),
                  ("redeem", False, 3, 0), ("redeem", True, 4, 1)]
        for kind, paced, seed_value, share in phases:
            if paced and not args.paced_rate:
                continue
            how = f"paced at {args.paced_rate:g}/s" if paced else "closed loop"
            print(f"{kind}: {args.connections} connections, {how}, {args.warmup:g} s warm-up "
                  f"+ {args.seconds:g} s …", file=sys.stderr, flush=True)
            outcome = run_child(children, __file__, "_load", {
                **base, "kind": kind, "rate": args.paced_rate if paced else None,
                "seed": seed_value, "share": share}, child_env({}), tmp,
                timeout=args.warmup + args.seconds + 120, cpu=1)
            if "error" in outcome:
                raise SystemExit(f"FAILED: {kind} ({how}): {outcome['error']}\n"
                                 f"server log tail:\n"
                                 f"{server.log.read_text(errors='replace')[-2000:]}")
            outcomes[(kind, paced)] = outcome
    finally:
        server.stop()
    print("checking the database …", file=sys.stderr, flush=True)
    redeemed = sorted(code for (kind, _), outcome in outcomes.items() if kind == "redeem"
                      for code in outcome["redeemed"])
    checked = verify(db_path, seeded, redeemed)
    floors = []
    for path, synchronous in zip(floor_dbs, (None, "FULL"), strict=True):
        print(f"raw floor (synchronous={synchronous or 'as omniloop'}) …", file=sys.stderr,
              flush=True)
        outcome = run_child(children, __file__, "_floor", {
            "db": str(path), "synchronous": synchronous, "codes_file": str(codes_file),
            "seed": 5, "count": args.codes, "seconds": args.floor_seconds,
            "tenant_id": seeded["tenant_id"], "campaign_id": seeded["unique_campaign_id"],
            "store_id": seeded["store_id"]}, env, tmp, timeout=args.floor_seconds + 120, cpu=0)
        floors.append(Floor(**outcome))

    def paced_phase(kind: str) -> Phase | None:
        return phase_from(outcomes[(kind, True)]) if (kind, True) in outcomes else None

    return Figures(validate=phase_from(outcomes[("validate", False)]),
                   redeem=phase_from(outcomes[("redeem", False)]),
                   validate_paced=paced_phase("validate"), redeem_paced=paced_phase("redeem"),
                   redeemed_total=len(redeemed), floor=floors[0], floor_full=floors[1],
                   checked=checked)


def _durability(pragmas: dict[str, Any]) -> str:
    return (f"journal_mode={pragmas['journal_mode']}, "
            f"synchronous={SYNCHRONOUS.get(int(pragmas['synchronous']), pragmas['synchronous'])}")


def report(f: Figures, args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None, markdown: bool) -> str:
    def us(cpu: float | None, n: int) -> str:
        return f"{cpu / n * 1e6:,.0f}" if cpu is not None and n else "n/a"

    def util(cpu: float | None, seconds: float) -> str:
        return f"{cpu / seconds:.0%}" if cpu is not None and seconds > 0 else "n/a"

    header = ("operation", "requests", "per s", "mean ms", "p50 ms", "p95 ms", "p99 ms",
              "max ms", "server CPU µs/req", "srv CPU", "load CPU")
    rows: list[tuple[str, ...]] = []
    paced = f"paced {args.paced_rate:g}/s"
    phases = [("POST /pos/validate, closed loop", f.validate),
              (f"POST /pos/validate, {paced}", f.validate_paced),
              ("POST /pos/redeem, closed loop", f.redeem),
              (f"POST /pos/redeem, {paced}", f.redeem_paced)]
    for name, phase in phases:
        if phase is None:
            continue
        rows.append((name, f"{phase.requests:,}", f"{phase.rate:,.0f}", f"{phase.mean_ms:.1f}",
                     f"{phase.p50_ms:.1f}", f"{phase.p95_ms:.1f}", f"{phase.p99_ms:.1f}",
                     f"{phase.max_ms:.1f}", us(phase.server_cpu, phase.requests),
                     util(phase.server_cpu, phase.seconds),
                     util(phase.client_cpu, phase.seconds)))
    for floor, label in ((f.floor, "raw floor, same pragmas"),
                         (f.floor_full, "raw floor, synchronous=FULL")):
        rows.append((f"redeem: {label}", f"{floor.redemptions:,}", f"{floor.rate:,.0f}",
                     f"{floor.seconds / floor.redemptions * 1000:.2f}", "", "", "", "",
                     us(floor.cpu, floor.redemptions), util(floor.cpu, floor.seconds), ""))
    table = render_table(header, rows, markdown)

    v, r = f.validate, f.redeem
    checks = [
        (v.p99_ms <= TARGET_VALIDATE_P99_MS,
         f"validate p99 {v.p99_ms:.1f} ms at {args.connections} clients (target ≤ "
         f"{TARGET_VALIDATE_P99_MS:g} ms; anchor {ANCHOR['validate']})"),
        (r.p99_ms <= TARGET_REDEEM_P99_MS,
         f"redeem p99 {r.p99_ms:.1f} ms at {args.connections} clients (target ≤ "
         f"{TARGET_REDEEM_P99_MS:g} ms; anchor {ANCHOR['redeem']})"),
        (r.rate >= TARGET_REDEEM_RATE,
         f"redemption throughput {r.rate:,.0f}/s (target ≥ {TARGET_REDEEM_RATE:,.0f}/s), "
         f"{_durability(f.floor.pragmas)}"),
    ]
    lines = [
        f"omniloop POS API: {args.connections} keep-alive connections, closed loop (each sends "
        f"again as soon as answered) and paced ({args.paced_rate:g} requests/s in all, latency "
        f"from when each was due); {args.warmup:g} s warm-up + {args.seconds:g} s per phase; "
        f"{args.codes:,} unique codes; "
        f"{'server and load process pinned to a CPU each' if pinned else 'unpinned'}",
        machine_line("fastapi", "pydantic", "SQLAlchemy", "uvicorn", "uvloop"),
        f"omniloop's SQLite write connection: {_durability(f.floor.pragmas)}, "
        f"wal_autocheckpoint={f.floor.pragmas['wal_autocheckpoint']}, "
        f"cache_size={f.floor.pragmas['cache_size']}, "
        f"foreign_keys={f.floor.pragmas['foreign_keys']} (the floor uses the same)",
    ]
    if load is not None:
        lines.append(load_line(load))
    c = f.checked
    lines += [
        "", *table, "",
        f"omniloop ÷ raw floor (same pragmas): {r.rate / f.floor.rate:.2f} of its "
        f"redemptions/s ({f.floor.rate / r.rate:.1f}× fewer); server CPU per redemption "
        + (f"{r.server_cpu / r.requests / (f.floor.cpu / f.floor.redemptions):.1f}× the floor's"
           if r.server_cpu is not None and r.requests else "n/a"),
        f"omniloop ÷ raw floor (synchronous=FULL): {r.rate / f.floor_full.rate:.2f}",
        f"closed loop, Little's law: {args.connections} clients ÷ {v.rate:,.0f} validations/s "
        f"= {args.connections / v.rate * 1000:.0f} ms, ÷ {r.rate:,.0f} redemptions/s = "
        f"{args.connections / r.rate * 1000:.0f} ms of mean latency, whatever the code does "
        "with its time" if v.rate and r.rate else "",
        f"database after the run: {f.redeemed_total:,} answers 201 (warm-up included) = "
        f"redeemed_count {c['redeemed_count']:,} = redemptions {c['redemptions']:,} = "
        f"redeemed coupons {c['redeemed_coupons']:,} = coupon_redeemed events "
        f"{c['events']:,}; coupons redeemed twice: {c['coupons_redeemed_twice']}",
        "",
        *(f"{'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks),
    ]
    for name, phase, target in (("validate", f.validate_paced, TARGET_VALIDATE_P99_MS),
                                ("redeem", f.redeem_paced, TARGET_REDEEM_P99_MS)):
        if phase is not None:
            lines.append(f"  (for reference, not the target's condition: {name} paced at "
                         f"{args.paced_rate:g}/s over {args.connections} connections: p99 "
                         f"{phase.p99_ms:.1f} ms, {'within' if phase.p99_ms <= target else 'over'}"
                         f" {target:g} ms)")
    return "\n".join(lines)


def targets_met(f: Figures) -> bool:
    return (f.validate.p99_ms <= TARGET_VALIDATE_P99_MS
            and f.redeem.p99_ms <= TARGET_REDEEM_P99_MS
            and f.redeem.rate >= TARGET_REDEEM_RATE)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="POS validate and redeem through omniloop's HTTP API at 32 concurrent "
                    "clients on a fresh SQLite database, against bare sqlite3 doing the same "
                    "conditional updates and inserts per redemption.")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent keep-alive clients (default: 32)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured duration of each phase (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each phase (default: 2)")
    parser.add_argument("--paced-rate", type=float, default=100.0,
                        help="after each closed-loop phase, the same requests at this many per "
                             "second in all, spread over the connections, latency counted "
                             "from when each was due (default: 100; 0 skips these phases)")
    parser.add_argument("--codes", type=int, default=50_000,
                        help="unique codes generated (default: 50000); redemption stops the "
                             "run with an error if they run out")
    parser.add_argument("--floor-seconds", type=float, default=4.0,
                        help="how long each raw floor runs at most (default: 4)")
    add_report_options(parser)
    args = parser.parse_args(argv)
    if (args.connections < 1 or args.seconds <= 0 or args.warmup < 0 or args.codes < 100
            or args.floor_seconds <= 0 or args.paced_rate < 0):
        parser.error("--connections >= 1, --codes >= 100, durations > 0 (--warmup >= 0)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    figures = run_bench(
        "omniloop-bench-pos-", pin=not args.no_pin,
        work=lambda children, tmp: run(args, children, tmp),
        report=lambda found, pin, load: report(found, args, pin, load, args.markdown))
    if figures is None:
        return 130
    return 1 if args.strict and not targets_met(figures) else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load", "_floor"):
        task = {"_seed": seed, "_load": run_load, "_floor": run_floor}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
