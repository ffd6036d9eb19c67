"""Order ingestion with points earning through the HTTP API, against a bare-sqlite3 floor.

omniloop runs as `omniloop serve` runs it: one uvicorn process (`omniloop.app:create_app`,
uvloop + httptools, here without the access log), on 127.0.0.1, on a fresh SQLite database
in a temporary directory, seeded through the service functions with one brand (the default
loyalty program: 1 point per NT$100, rounded down, 12 months), three stores, a `pos` API key
and --members known members, each a profile with a phone, the first --cards of them also with
a POS card number on the same profile (identify with both).

A separate load process (pinned to the second CPU; the server gets the first) keeps 32
keep-alive HTTP/1.1 connections busy with `POST /api/v1/orders`: a closed loop first (each
connection sends its next order as soon as the previous answer is in: 32 tills with no
pause), then the same kind of orders at a fixed pace (--paced-rate, taking turns over the
connections, each latency counted from when the order was due). Every order has a new
external id, 1–4 lines (name and category sent, as POS systems do), a total of at least
NT$100 so that every order earns, paid a few minutes ago, 9 in 10 at a store (by code), 1 in
10 online; and a buyer: half known members by phone (typed `0912-345-678`,
`+886 912 345 678` or `0912345678`), a quarter known members by POS card, a quarter new phones
(a new profile each). Bodies are built before the clock starts. Every answer must be `201`
with the order's external id, its total and lines, and the buyer's profile (the member's own
for known phones and cards).

After the timed phases, not timed: the first 500 orders are sent again (each must answer 200
with the same order id: idempotent by external id) and one with changed lines (409). Then the
database is checked: one order, one `purchase` event and one `earn` entry per answer 201,
exactly the external ids answered; no order earned twice; each entry's points are what the
program gives for its order's total; and for every points account, balance = sum of its
entries = sum of its open lots, and lifetime_earned = sum of its earn entries.

The raw floor, in the same run, on a copy of the seeded database taken before the server
started: bare `sqlite3`, one connection, one process, per order of the same mix in its own
`BEGIN IMMEDIATE … COMMIT` the statements omniloop's ingestion needs: the idempotency look-up
by external id, the store by code, the identity and its profile (the phone normalised by a
regular expression; a new profile and identity when unknown), INSERT the order, its lines
(`executemany`) and its `purchase` event, the points account upserted (`INSERT … ON CONFLICT
DO UPDATE … RETURNING balance`), INSERT the points entry; with the PRAGMAs of omniloop's write
connection (core/db.py). No HTTP, authentication, validation, ORM or JSON answer.

Target (issue 5): ≥ 1,000 orders/s on SQLite with earning, closed loop at 32 connections.
PASS/FAIL is printed; the exit status is 1 only for a failed run, or with --strict for a missed
target too.

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`, `_floor <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import (
    Children,
    Phase,
    Server,
    add_report_options,
    child_env,
    copy_database,
    exchange,
    floor_connection,
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

PATH = "/api/v1/orders"
STORE_CODES = ("TPE01", "TPE02", "TXG01")
TARGET_RATE = 1000.0
EARN_UNIT_MINOR = 10000  # the default program: 1 point per NT$100, rounded down
RETRIES = 500
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
# (sku, name, category, unit price): a café's menu; every order's first line is a drink of
# NT$100 or more, so every order earns.
MENU = (
    ("CF-LATTE", "拿鐵", "咖啡", 13000), ("CF-AMER", "美式咖啡", "咖啡", 10000),
    ("CF-MOCHA", "摩卡", "咖啡", 15000), ("TEA-OOL", "凍頂烏龍", "茶", 11000),
    ("CK-CHEESE", "重乳酪蛋糕", "甜點", 9000), ("CK-TIRA", "提拉米蘇", "甜點", 12000),
    ("BK-CROIS", "可頌", "烘焙", 6500), ("BN-1KG", "招牌豆 1kg", "咖啡豆", 98000),
)
DRINKS = MENU[:4]


def phone_digits(n: int, prefix: str = "0912") -> str:
    """A valid Taiwanese mobile number: 0912 000 000 + n (members); other prefixes for the
    new phones of each phase and of the floor, so that they never meet."""
    return f"{prefix}{n:06d}"


def phone_as_typed(n: int, style: int) -> str:
    d = phone_digits(n)
    if style == 0:
        return f"{d[:4]}-{d[4:7]}-{d[7:]}"
    if style == 1:
        return f"+886 {d[1:4]} {d[4:7]} {d[7:]}"
    return d


def card_number(n: int) -> str:
    return f"C{n:09d}"


def build_orders(count: int, *, tag: str, seed_value: int, members: int, cards: int,
                 new_prefix: str) -> list[tuple[dict[str, Any], str | None]]:
    """(body, the member's key or None for a new phone): `("phone", n)`/`("card", n)` keys
    as 'p:n' / 'c:n'."""
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    orders: list[tuple[dict[str, Any], str | None]] = []
    for i in range(count):
        draw = rng.random()
        if draw < 0.5:
            n = rng.randrange(members)
            identity, member = {"kind": "phone", "value": phone_as_typed(n, i % 3)}, f"p:{n}"
        elif draw < 0.75:
            n = rng.randrange(cards)
            identity, member = {"kind": "pos_card", "value": card_number(n)}, f"c:{n}"
        else:
            identity = {"kind": "phone", "value": phone_digits(i, new_prefix)}
            member = None
        first = rng.choice(DRINKS)
        picked = [first] + [rng.choice(MENU) for _ in range(rng.randrange(4))]
        lines = [{"sku": sku, "name": name, "category": category,
                  "quantity": 1 if k == 0 else rng.randrange(1, 3), "unit_price_minor": price}
                 for k, (sku, name, category, price) in enumerate(picked)]
        body: dict[str, Any] = {
            "external_id": f"{tag}-{i:07d}", "source": "pos", "identities": [identity],
            "lines": lines,
            "paid_at": (now - timedelta(seconds=rng.randrange(60, 3600))).isoformat()}
        if rng.random() < 0.9:
            body["store_code"] = STORE_CODES[i % len(STORE_CODES)]
        else:
            body["source"] = "shop"
        orders.append((body, member))
    return orders


def order_total(body: dict[str, Any]) -> int:
    return sum(line["quantity"] * line["unit_price_minor"] for line in body["lines"])


# --------------------------------------------------------------------------------------------
# Seeding (a child process, with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

def seed(config: dict[str, Any]) -> dict[str, Any]:
    """Migrate a fresh database: a brand, its program, stores, a pos key and the members."""
    from omniloop.core.db import set_database
    from omniloop.customers.identify import identify_profile
    from omniloop.customers.models import IdentityKind
    from omniloop.customers.schemas import IdentityIn
    from omniloop.loyalty.models import Rounding
    from omniloop.loyalty.program import get_program

    brand = seed_brand(config["url"], [{"code": code, "name": f"門市 {code}"}
                                       for code in STORE_CODES], ["pos"], key_name="bench pos")
    database, tenant_id, actor = brand.database, brand.tenant_id, brand.actor
    with database.unit_of_work() as session:
        program = get_program(session, tenant_id)
        if (program.earn_unit_minor, program.earn_points, program.rounding) != (
                EARN_UNIT_MINOR, 1, Rounding.down):
            raise SystemExit("the default loyalty program changed: update EARN_UNIT_MINOR")
    phones: list[str] = []
    cards: list[str] = []
    for start in range(0, config["members"], 500):
        with database.unit_of_work() as session:
            for n in range(start, min(start + 500, config["members"])):
                identities = [IdentityIn(kind=IdentityKind.phone, value=phone_digits(n))]
                if n < config["cards"]:
                    identities.append(IdentityIn(kind=IdentityKind.pos_card,
                                                 value=card_number(n)))
                done = identify_profile(session, actor, identities, source="seed")
                phones.append(done.customer_id)
                if n < config["cards"]:
                    cards.append(done.customer_id)
    set_database(None)
    database.dispose()
    Path(config["members_file"]).write_text(json.dumps({"phones": phones, "cards": cards}))
    copy_database(config["url"], config["floor_copy"])
    return {"tenant_id": tenant_id, "api_key": brand.api_key}


# --------------------------------------------------------------------------------------------
# Load generator (a child process): a lean HTTP/1.1 client on one asyncio loop
# --------------------------------------------------------------------------------------------

async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    status, _head, body = await exchange(reader, writer, request)
    return status, body


def _request(host: str, api_key: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def _checker(body: dict[str, Any], member: str | None, members: dict[str, list[str]],
             answered: dict[str, str], status_wanted: int = 201,
             order_id: str | None = None) -> Any:
    external_id, total, lines = body["external_id"], order_total(body), len(body["lines"])
    expected_customer = None
    if member is not None:
        kind, n = member.split(":")
        expected_customer = members["phones" if kind == "p" else "cards"][int(n)]

    def check(status: int, raw: bytes) -> str | None:
        if status != status_wanted:
            return f"order {external_id} answered {status}: {raw[:300]!r}"
        answer = json.loads(raw)
        if (answer.get("external_id") != external_id or answer.get("total_minor") != total
                or len(answer.get("lines", ())) != lines or not answer.get("customer_id")
                or (expected_customer is not None
                    and answer["customer_id"] != expected_customer)
                or (order_id is not None and answer.get("id") != order_id)):
            return f"order {external_id}: unexpected answer {raw[:400]!r}"
        answered[external_id] = answer["id"]
        return None

    return check


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """The closed loop, then the paced phase, then the retries (see the module docstring)."""
    parts = urlsplit(config["base_url"])
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("the load generator only talks to 127.0.0.1:<port>")
    host, port = parts.hostname, parts.port
    members: dict[str, list[str]] = json.loads(Path(config["members_file"]).read_text())
    server_pid: int = config["server_pid"]
    key = config["api_key"]
    answered: dict[str, str] = {}
    count = config["orders"]
    # (phase, pace, random seed, prefix of its new phones)
    phases = [("closed", None, 11, "0921"), ("paced", config["paced_rate"] or None, 12, "0922")]
    prepared: dict[str, list[tuple[bytes, Any, dict[str, Any]]]] = {}
    for name, rate, seed_value, prefix in phases:
        if name == "paced" and rate is None:
            continue
        wanted = count if rate is None else int(rate * (config["warmup"] + config["seconds"])
                                                + 100)
        built = build_orders(wanted, tag=f"bench-{name}", seed_value=seed_value,
                             members=len(members["phones"]), cards=len(members["cards"]),
                             new_prefix=prefix)
        prepared[name] = [(_request(parts.netloc, key, body),
                           _checker(body, member, members, answered), body)
                          for body, member in built]

    async def phase(opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                    requests: list[tuple[bytes, Any, dict[str, Any]]],
                    rate: float | None) -> dict[str, Any]:
        pending = iter(requests)

        def next_request() -> tuple[bytes, Any] | None:
            item = next(pending, None)
            return None if item is None else (item[0], item[1])

        return await timed_phase(opened, next_request, warmup=config["warmup"],
                                 seconds=config["seconds"], rate=rate, server_pid=server_pid)

    async def main() -> dict[str, Any]:
        opened = [await asyncio.open_connection(host, port)
                  for _ in range(config["connections"])]
        outcome: dict[str, Any] = {}
        try:
            for name, rate, _, _ in phases:
                if name not in prepared:
                    continue
                result = await phase(opened, prepared[name], rate)
                if "error" in result:
                    return {"error": f"{name}: {result['error']}"}
                outcome[name] = result
            # Retries (not timed): the same order again answers 200 with the same order;
            # the same external id with other lines answers 409.
            reader, writer = opened[0]
            sent = [item for item in prepared["closed"] if item[2]["external_id"] in answered]
            for _request_bytes, _check, body in sent[:RETRIES]:
                check = _checker(body, None, members, {}, 200,
                                 answered[body["external_id"]])
                problem = check(*await _exchange(reader, writer,
                                                 _request(parts.netloc, key, body)))
                if problem:
                    return {"error": f"retry: {problem}"}
            changed = dict(sent[0][2], lines=sent[0][2]["lines"][:1] + [
                {"sku": "CK-TIRA", "name": "提拉米蘇", "category": "甜點", "quantity": 9,
                 "unit_price_minor": 12000}])
            status, raw = await _exchange(reader, writer, _request(parts.netloc, key, changed))
            if status != 409 or b"order_conflict" not in raw:
                return {"error": f"changed retry answered {status}: {raw[:300]!r}"}
            outcome["retried"] = min(len(sent), RETRIES)
        finally:
            for _, writer in opened:
                writer.close()
        outcome["answered"] = answered
        return outcome

    return run_loop(main)


# --------------------------------------------------------------------------------------------
# The raw floor (a child process)
# --------------------------------------------------------------------------------------------

_NOT_DIGITS = re.compile(r"\D")


def _floor_phone(value: str) -> str:
    digits = _NOT_DIGITS.sub("", value)
    return "+" + digits if value.lstrip().startswith("+") else "+886" + digits[1:]


def _sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _new_id() -> str:
    return secrets.token_hex(13).upper()[:26]


def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    """The same statements per order with bare sqlite3, each order a transaction."""
    conn = floor_connection(config["db"])
    tenant_id = conn.execute("SELECT id FROM tenants").fetchone()[0]
    settings = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in (
        "journal_mode", "synchronous", "wal_autocheckpoint", "cache_size", "foreign_keys")}
    orders = build_orders(config["count"], tag="floor", seed_value=21,
                          members=config["members"], cards=config["cards"],
                          new_prefix="0933")
    label = "API key bench pos (olk_…)"
    insert_order = (
        "INSERT INTO orders (tenant_id, id, external_id, source, channel, store_id, customer_id,"
        " currency, subtotal_minor, discount_minor, total_minor, refunded_minor, status, "
        "paid_at, content_digest, created_at, updated_at) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, 'TWD', ?, 0, ?, 0, 'paid', ?, ?, ?, ?)")
    insert_line = (
        "INSERT INTO order_lines (tenant_id, id, order_id, position, sku, name, category, "
        "quantity, unit_price_minor, discount_minor, total_minor, net_minor, refunded_quantity)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0)")
    insert_event = (
        "INSERT INTO events (tenant_id, id, client_event_id, customer_id, type, channel, "
        "source, store_id, campaign_id, properties, occurred_at, received_at) "
        "VALUES (?, ?, ?, ?, 'purchase', ?, ?, ?, NULL, ?, ?, ?)")
    upsert_account = (
        "INSERT INTO points_accounts (tenant_id, customer_id, balance, lifetime_earned, "
        "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, customer_id) DO UPDATE "
        "SET balance = balance + excluded.balance, lifetime_earned = lifetime_earned + "
        "excluded.lifetime_earned, updated_at = excluded.updated_at RETURNING balance")
    insert_entry = (
        "INSERT INTO points_entries (tenant_id, id, customer_id, kind, points, balance_after, "
        "reason, order_id, refund_id, reference, actor_label, idempotency_key, remaining, "
        "lot_open, expires_at, unrecovered, created_at) VALUES "
        "(?, ?, ?, 'earn', ?, ?, 'order', ?, NULL, NULL, ?, ?, ?, 1, ?, 0, ?)")
    done = 0
    cpu, begin = time.process_time(), time.perf_counter()
    for body, _member in orders:
        now = datetime.now(UTC)
        stamp = _sqlite_time(now)
        paid_at = datetime.fromisoformat(body["paid_at"])
        identity = body["identities"][0]
        kind = identity["kind"]
        value = _floor_phone(identity["value"]) if kind == "phone" else identity["value"]
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT id, content_digest FROM orders WHERE tenant_id = ? AND "
                            "external_id = ?", (tenant_id, body["external_id"])).fetchone():
                raise RuntimeError(f"order {body['external_id']} exists")
            store_id = None
            if "store_code" in body:
                store_id = conn.execute("SELECT id FROM stores WHERE tenant_id = ? AND code = ?",
                                        (tenant_id, body["store_code"])).fetchone()[0]
            row = conn.execute(
                "SELECT c.id, c.merged_into_id FROM customer_identities i JOIN customers c "
                "ON c.tenant_id = i.tenant_id AND c.id = i.customer_id WHERE i.tenant_id = ? "
                "AND i.kind = ? AND i.value = ?", (tenant_id, kind, value)).fetchone()
            if row is None:
                customer_id = _new_id()
                conn.execute("INSERT INTO customers (tenant_id, id, tags, created_at, "
                             "updated_at) VALUES (?, ?, '[]', ?, ?)",
                             (tenant_id, customer_id, stamp, stamp))
                conn.execute("INSERT INTO customer_identities (tenant_id, id, customer_id, "
                             "kind, value, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (tenant_id, _new_id(), customer_id, kind, value, body["source"],
                              stamp))
            else:
                customer_id = row[0]
            order_id = _new_id()
            total = order_total(body)
            conn.execute(insert_order, (
                tenant_id, order_id, body["external_id"], body["source"],
                "store" if store_id else "online", store_id, customer_id, total, total,
                _sqlite_time(paid_at), digest, stamp, stamp))
            conn.executemany(insert_line, [
                (tenant_id, _new_id(), order_id, position, line["sku"], line["name"],
                 line["category"], line["quantity"], line["unit_price_minor"],
                 line["quantity"] * line["unit_price_minor"],
                 line["quantity"] * line["unit_price_minor"])
                for position, line in enumerate(body["lines"], start=1)])
            properties = json.dumps({
                "order_id": order_id, "external_id": body["external_id"], "total_minor": total,
                "currency": "TWD", "items": sum(line["quantity"] for line in body["lines"])})
            conn.execute(insert_event, (
                tenant_id, _new_id(), f"order:{order_id}", customer_id,
                "offline" if store_id else "online", body["source"], store_id, properties,
                _sqlite_time(paid_at), stamp))
            points = total // EARN_UNIT_MINOR
            balance = conn.execute(upsert_account, (tenant_id, customer_id, points, points,
                                                    stamp)).fetchone()[0]
            expires = _sqlite_time(paid_at.replace(year=paid_at.year + 1))
            conn.execute(insert_entry, (
                tenant_id, _new_id(), customer_id, points, balance, order_id, label,
                f"earn:order:{order_id}", points, expires, stamp))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += 1
        if time.perf_counter() - begin >= config["seconds"]:
            break
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
    stored = conn.execute("SELECT count(*) FROM points_entries WHERE order_id IS NOT NULL"
                          ).fetchone()[0]
    conn.close()
    if stored != done:
        raise SystemExit(f"floor: {stored} points entries after {done} orders")
    return {"orders": done, "seconds": wall, "cpu": cpu, "pragmas": settings}


# --------------------------------------------------------------------------------------------
# Checking the product's database after the run
# --------------------------------------------------------------------------------------------

def verify(db_path: Path, tenant_id: str, answered: dict[str, str]) -> dict[str, int]:
    """One order, one purchase event, one earn entry per 201; balances add up three ways."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        def one(sql: str, *params: Any) -> int:
            return int(conn.execute(sql, params).fetchone()[0] or 0)

        found = {
            "orders": one("SELECT count(*) FROM orders WHERE tenant_id = ?", tenant_id),
            "purchase_events": one("SELECT count(*) FROM events WHERE tenant_id = ? AND "
                                   "type = 'purchase'", tenant_id),
            "earn_entries": one("SELECT count(*) FROM points_entries WHERE tenant_id = ? AND "
                                "kind = 'earn' AND order_id IS NOT NULL", tenant_id),
            "orders_earned": one("SELECT count(DISTINCT order_id) FROM points_entries WHERE "
                                 "tenant_id = ? AND kind = 'earn'", tenant_id),
            "accounts": one("SELECT count(*) FROM points_accounts WHERE tenant_id = ?",
                            tenant_id),
            "buyers": one("SELECT count(DISTINCT customer_id) FROM orders WHERE tenant_id = ?",
                          tenant_id),
            "wrong_points": one(
                "SELECT count(*) FROM points_entries e JOIN orders o ON o.tenant_id = "
                "e.tenant_id AND o.id = e.order_id WHERE e.tenant_id = ? AND e.kind = 'earn' "
                "AND (e.points != o.total_minor / ? OR e.customer_id != o.customer_id)",
                tenant_id, EARN_UNIT_MINOR),
            "balances_off": one(
                "SELECT count(*) FROM points_accounts a LEFT JOIN (SELECT customer_id, "
                "sum(points) AS total, sum(CASE WHEN lot_open THEN remaining ELSE 0 END) AS "
                "open_lots, sum(CASE WHEN kind = 'earn' THEN points ELSE 0 END) AS earned "
                "FROM points_entries WHERE tenant_id = ? GROUP BY customer_id) e "
                "ON e.customer_id = a.customer_id WHERE a.tenant_id = ? AND "
                "(a.balance != coalesce(e.total, 0) OR a.balance != coalesce(e.open_lots, 0) "
                "OR a.lifetime_earned != coalesce(e.earned, 0))", tenant_id, tenant_id),
        }
        stored = dict(conn.execute("SELECT external_id, id FROM orders WHERE tenant_id = ?",
                                   (tenant_id,)).fetchall())
    n = len(answered)
    problems = [f"{name} = {found[name]:,}, expected {n:,}"
                for name in ("orders", "purchase_events", "earn_entries", "orders_earned")
                if found[name] != n]
    if found["accounts"] != found["buyers"]:
        problems.append(f"{found['accounts']:,} points accounts for {found['buyers']:,} buyers")
    for name in ("wrong_points", "balances_off"):
        if found[name]:
            problems.append(f"{name}: {found[name]:,}")
    if stored != answered:
        problems.append("the orders stored differ from those answered 201")
    if problems:
        raise SystemExit("FAILED: the database after the run:\n  " + "\n  ".join(problems))
    return found


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Floor:
    orders: int
    seconds: float
    cpu: float
    pragmas: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Figures:
    closed: Phase
    paced: Phase | None
    retried: int
    floor: Floor
    checked: dict[str, int]


def run(args: argparse.Namespace, children: Children, tmp: Path) -> Figures:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    members_file = tmp / "members.json"
    floor_db = tmp / "floor.db"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print(f"seeding ({args.members:,} members, {args.cards:,} with a POS card) …",
          file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {
        "url": url, "members": args.members, "cards": args.cards,
        "members_file": str(members_file), "floor_copy": str(floor_db)},
        env, data_dir, timeout=600)
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe="/api/v1/pos/qr-key")
    try:
        server.wait_ready({"Authorization": f"Bearer {seeded['api_key']}"})
        print(f"orders: {args.connections} connections, closed loop then paced at "
              f"{args.paced_rate:g}/s, {args.warmup:g} s warm-up + {args.seconds:g} s each …",
              file=sys.stderr, flush=True)
        outcome = run_child(children, __file__, "_load", {
            "base_url": server.base_url, "api_key": seeded["api_key"],
            "server_pid": server.process.pid, "connections": args.connections,
            "warmup": args.warmup, "seconds": args.seconds, "orders": args.orders,
            "paced_rate": args.paced_rate, "members_file": str(members_file)},
        child_env({}), tmp,
            timeout=2 * (args.warmup + args.seconds) + 300, cpu=1)
        if "error" in outcome:
            raise SystemExit(f"FAILED: {outcome['error']}\nserver log tail:\n"
                             f"{server.log.read_text(errors='replace')[-2000:]}")
    finally:
        server.stop()
    print("checking the database …", file=sys.stderr, flush=True)
    checked = verify(db_path, seeded["tenant_id"], outcome["answered"])
    print("raw floor …", file=sys.stderr, flush=True)
    floor = run_child(children, __file__, "_floor", {
        "db": str(floor_db), "count": 100_000, "seconds": args.floor_seconds,
        "members": args.members, "cards": args.cards},
        env, tmp, timeout=args.floor_seconds + 300, cpu=0)

    def phase(name: str) -> Phase | None:
        data = outcome.get(name)
        return phase_from(data) if data else None

    closed = phase("closed")
    assert closed is not None
    return Figures(closed=closed, paced=phase("paced"), retried=outcome["retried"],
                   floor=Floor(**floor), checked=checked)


def report(f: Figures, args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None, markdown: bool) -> str:
    def us(cpu: float | None, n: int) -> str:
        return f"{cpu / n * 1e6:,.0f}" if cpu is not None and n else "n/a"

    def util(cpu: float | None, seconds: float) -> str:
        return f"{cpu / seconds:.0%}" if cpu is not None and seconds > 0 else "n/a"

    header = ("what", "orders", "orders/s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms",
              "server CPU µs/order", "srv CPU", "load CPU")
    rows: list[tuple[str, ...]] = []
    for name, phase in ((f"POST {PATH}, closed loop", f.closed),
                        (f"POST {PATH}, paced {args.paced_rate:g}/s", f.paced)):
        if phase is None:
            continue
        rows.append((name + (" (ran out of orders)" if phase.exhausted else ""),
                     f"{phase.requests:,}", f"{phase.rate:,.0f}", f"{phase.mean_ms:.1f}",
                     f"{phase.p50_ms:.1f}", f"{phase.p95_ms:.1f}", f"{phase.p99_ms:.1f}",
                     f"{phase.max_ms:.1f}", us(phase.server_cpu, phase.requests),
                     util(phase.server_cpu, phase.seconds),
                     util(phase.client_cpu, phase.seconds)))
    rows.append(("raw floor (sqlite3, same statements)", f"{f.floor.orders:,}",
                 f"{f.floor.rate:,.0f}", f"{f.floor.seconds / f.floor.orders * 1000:.2f}",
                 "", "", "", "", us(f.floor.cpu, f.floor.orders),
                 util(f.floor.cpu, f.floor.seconds), ""))
    table = render_table(header, rows, markdown)
    c, p = f.closed, f.floor.pragmas
    cpu_ratio = (f"{c.server_cpu / c.requests / (f.floor.cpu / f.floor.orders):.1f}× the "
                 "floor's" if c.server_cpu is not None and c.requests else "n/a")
    lines = [
        f"omniloop order ingestion with earning: {args.connections} keep-alive connections, "
        f"closed loop then paced ({args.paced_rate:g}/s in all); {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s per phase; {args.members:,} members ({args.cards:,} with a POS "
        f"card); {'server and load process pinned to a CPU each' if pinned else 'unpinned'}",
        machine_line("fastapi", "pydantic", "SQLAlchemy", "uvicorn", "uvloop"),
        f"SQLite write settings (omniloop's and the floor's): journal_mode={p['journal_mode']}, "
        f"synchronous={SYNCHRONOUS.get(int(p['synchronous']), p['synchronous'])}, "
        f"wal_autocheckpoint={p['wal_autocheckpoint']}, "
        f"cache_size={p['cache_size']}, foreign_keys={p['foreign_keys']}",
    ]
    if load is not None:
        lines.append(load_line(load))
    k = f.checked
    lines += [
        "", *table, "",
        f"omniloop ÷ raw floor: {c.rate / f.floor.rate:.2f} of its orders/s (the floor "
        f"{f.floor.rate / c.rate:.1f}× faster); server CPU per order {cpu_ratio}"
        if c.rate else "omniloop answered no order in the closed loop",
        f"retries: {f.retried} orders sent again answered 200 with the same order; a changed "
        "one 409",
        f"database after the run: {k['orders']:,} orders = purchase events "
        f"{k['purchase_events']:,} = earn entries {k['earn_entries']:,} (one per order); "
        f"{k['accounts']:,} points accounts for {k['buyers']:,} buyers; every balance = ledger "
        "sum = open lots",
        "",
        f"{'PASS' if c.rate >= TARGET_RATE else 'FAIL'}: {c.rate:,.0f} orders/s with earning "
        f"at {args.connections} clients (target ≥ {TARGET_RATE:,.0f}/s; floor "
        f"{f.floor.rate:,.0f}/s)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="POST /api/v1/orders (identify + order + earning) through omniloop's HTTP "
                    "API at 32 concurrent clients on a fresh SQLite database, against bare "
                    "sqlite3 doing the same statements per order.")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent keep-alive clients (default: 32)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured duration of each phase (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each phase (default: 2)")
    parser.add_argument("--paced-rate", type=float, default=100.0,
                        help="after the closed loop, orders at this many per second in all "
                             "(default: 100; 0 skips the phase)")
    parser.add_argument("--orders", type=int, default=40_000,
                        help="orders prepared for the closed loop (default: 40000)")
    parser.add_argument("--members", type=int, default=10_000,
                        help="known members, each with a phone (default: 10000)")
    parser.add_argument("--cards", type=int, default=4_000,
                        help="of which with a POS card too (default: 4000)")
    parser.add_argument("--floor-seconds", type=float, default=4.0,
                        help="how long the raw floor runs at most (default: 4)")
    add_report_options(parser)
    args = parser.parse_args(argv)
    if (args.connections < 1 or args.seconds <= 0 or args.warmup < 0
            or not 600 <= args.orders <= 999_999 or args.members < 1
            or not 1 <= args.cards <= args.members or args.members > 50_000
            or args.floor_seconds <= 0 or args.paced_rate < 0):
        parser.error("--connections >= 1, 600 <= --orders <= 999999, 1 <= --cards <= "
                     "--members <= 50000, durations > 0 (--warmup >= 0)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    figures = run_bench(
        "omniloop-bench-orders-", pin=not args.no_pin,
        work=lambda children, tmp: run(args, children, tmp),
        report=lambda found, pin, load: report(found, args, pin, load, args.markdown))
    if figures is None:
        return 130
    return 1 if args.strict and figures.closed.rate < TARGET_RATE else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load", "_floor"):
        task = {"_seed": seed, "_load": run_load, "_floor": run_floor}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
