"""Baseline cost of omniloop's API request path, against the bare-framework floor.

What one omniloop API call costs on top of the framework it is built on. Every server is a
real uvicorn process on 127.0.0.1 (one worker, no access log); the load comes from a separate
process driving a fixed number of keep-alive connections with httpx. On Linux with 2 or more
CPUs the server is pinned to the first CPU and the load generator to the second (--no-pin to
turn this off). Besides req/s and latency, the server's own CPU time per request is reported
(from /proc): it does not depend on how fast the Python client can ask. Measured, per scenario:

  GET /api/v1/stores (8 stores)
    framework floor   bare FastAPI, no middleware, no database: a sync route returning the
                      very bytes omniloop answered
    raw-SQL floor     bare FastAPI, a sync route doing the equivalent single SELECT with the
                      stdlib sqlite3 module and json.dumps (no ORM, no Pydantic, no auth)
    omniloop          the real app: locale and session middleware, API-key authentication in
                      its own read transaction, the request's unit of work, a tenant-scoped
                      ORM query, Pydantic serialisation
  POST /api/v1/stores and PATCH /api/v1/stores/{id}
    raw-SQL floor     one INSERT (POST) or one UPDATE ... RETURNING (PATCH) with sqlite3
    omniloop          the real app (auth, BEGIN IMMEDIATE, service, audit entry, commit)

omniloop runs on a fresh SQLite database in a temporary directory, seeded through the service
functions with one brand, 8 stores and an `admin` API key; and also on PostgreSQL when
OMNILOOP_BENCH_POSTGRES_URL (or --postgres-url) names a database whose name contains "bench"
(its schema `public` is dropped and recreated).

Every response's status is checked (and a sample of bodies); any unexpected answer aborts
the run with exit status 1. Ratios are floor ÷ omniloop for throughput and omniloop ÷ floor
for server CPU per request, so both read "how many times the floor's cost".

Internal modes (used by the script itself): `_seed <json>`, `_load <json>`; the floor apps are
`bench_api_baseline:floor_json_app` and `bench_api_baseline:floor_sql_app` (uvicorn --factory).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Response
from harness import (
    Children,
    Server,
    child_env,
    copy_database,
    cpu_seconds,
    machine_line,
    percentile,
    render_table,
    run_bench,
    run_child,
    seed_brand,
)

BENCH_DIR = Path(__file__).resolve().parent
MODULE = Path(__file__).stem
STORE_COUNT = 8
STORE_KEYS = frozenset({"id", "code", "name", "address", "latitude", "longitude", "phone",
                        "opening_hours", "active", "created_at", "updated_at"})
FORBIDDEN_PG_DATABASES = frozenset({"omniloop_test", "omniloop_ci"})
VALIDATE_EVERY = 50  # check the body of the first response of each connection and every Nth


# --------------------------------------------------------------------------------------------
# Floor apps (imported by uvicorn in the server process; they never import omniloop)
# --------------------------------------------------------------------------------------------

_STORE_COLUMNS = ("id, code, name, address, latitude, longitude, phone, opening_hours, active, "
                  "created_at, updated_at")


def floor_json_app() -> FastAPI:
    """Bare FastAPI: no middleware, no database; answers omniloop's own GET body."""
    body = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/stores")
    def list_stores() -> Response:
        return Response(content=body, media_type="application/json")

    return app


def _iso(value: str) -> str:
    return value.replace(" ", "T", 1)


def _store_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "code": row[1], "name": row[2], "address": row[3],
            "latitude": row[4], "longitude": row[5], "phone": row[6],
            "opening_hours": json.loads(row[7]), "active": bool(row[8]),
            "created_at": _iso(row[9]), "updated_at": _iso(row[10])}


def _json_response(content: Any, status_code: int = 200) -> Response:
    return Response(content=json.dumps(content, ensure_ascii=False, separators=(",", ":")),
                    status_code=status_code, media_type="application/json")


def _sqlite_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")


def floor_sql_app() -> FastAPI:
    """Bare FastAPI plus the equivalent SQL with stdlib sqlite3: no ORM, no auth, no Pydantic."""
    path = os.environ["BENCH_FLOOR_DB"]
    tenant_id = os.environ["BENCH_TENANT_ID"]
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # The same settings omniloop gives its SQLite connections.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA synchronous=NORMAL")
            local.conn = conn
        return conn

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/stores")
    def list_stores() -> Response:
        rows = connection().execute(
            f"SELECT {_STORE_COLUMNS} FROM stores WHERE tenant_id = ? ORDER BY code",
            (tenant_id,)).fetchall()
        return _json_response([_store_row(row) for row in rows])

    @app.post("/api/v1/stores")
    def create_store(body: dict[str, Any]) -> Response:
        now = _sqlite_now()
        row = (secrets.token_hex(13), str(body["code"]).upper(), body["name"],
               body.get("address", ""), body.get("latitude"), body.get("longitude"),
               body.get("phone", ""), json.dumps(body.get("opening_hours", {})),
               int(body.get("active", True)), now, now)
        connection().execute(
            f"INSERT INTO stores (tenant_id, {_STORE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (tenant_id, *row))
        return _json_response(_store_row(row), status_code=201)

    @app.patch("/api/v1/stores/{store_id}")
    def update_store(store_id: str, body: dict[str, Any]) -> Response:
        row = connection().execute(
            f"UPDATE stores SET name = ?, updated_at = ? WHERE tenant_id = ? AND id = ? "
            f"RETURNING {_STORE_COLUMNS}",
            (body["name"], _sqlite_now(), tenant_id, store_id)).fetchone()
        if row is None:
            return _json_response({"error": "not found"}, status_code=404)
        return _json_response(_store_row(row))

    return app


# --------------------------------------------------------------------------------------------
# Seeding (a child process, with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DISTRICTS = ("信義區", "大安區", "中山區", "松山區", "內湖區", "士林區", "北投區", "萬華區")


def store_payload(code: str, index: int) -> dict[str, Any]:
    """A realistic store body: the one the seed uses and the one POST sends."""
    district = _DISTRICTS[index % len(_DISTRICTS)]
    return {
        "code": code, "name": f"{district}門市",
        "address": f"台北市{district}忠孝東路四段 {100 + index} 號 1 樓",
        "latitude": 25.03 + index % 1000 / 10000, "longitude": 121.56 + index % 1000 / 10000,
        "phone": f"02-2700-{1000 + index % 9000}",
        "opening_hours": {day: [{"open": "07:30", "close": "21:00"}] for day in _DAYS},
    }


def seed(config: dict[str, Any]) -> dict[str, Any]:
    """Migrate a fresh database and create a brand, 8 stores and an admin API key."""
    from omniloop.core.db import set_database

    brand = seed_brand(config["url"], [store_payload(f"S{i:02d}", i)
                                       for i in range(1, STORE_COUNT + 1)], ["admin"],
                       reset_schema=True)
    set_database(None)
    if config.get("floor_db"):
        # The raw-SQL floor gets its own copy, so its writes never change omniloop's data.
        copy_database(config["url"], config["floor_db"])
    return {"tenant_id": brand.tenant_id, "store_ids": brand.store_ids,
            "api_key": brand.api_key}


# --------------------------------------------------------------------------------------------
# Load generator (a child process)
# --------------------------------------------------------------------------------------------

RequestSpec = tuple[str, str, dict[str, Any] | None]
Check = Callable[[Any], bool]


def _is_store_list(body: Any) -> bool:
    return (isinstance(body, list) and len(body) == STORE_COUNT
            and all(isinstance(item, dict) and set(item) == STORE_KEYS for item in body))


def _has_fields(**expected: str) -> Check:
    def check(body: Any) -> bool:
        return isinstance(body, dict) and all(body.get(k) == v for k, v in expected.items())
    return check


def _requests_for(kind: str, worker: int, tag: str,
                  store_ids: list[str]) -> Iterator[tuple[RequestSpec, Check]]:
    """What connection `worker` sends, forever, and how to check a sampled answer."""
    for n in itertools.count():
        if kind == "get":
            yield ("GET", "/api/v1/stores", None), _is_store_list
        elif kind == "post":
            code = f"B{tag}W{worker}N{n}"
            yield (("POST", "/api/v1/stores", store_payload(code, n)),
                   _has_fields(code=code.upper()))
        elif kind == "patch":
            name = f"Bench store {worker}-{n}"
            store_id = store_ids[worker % len(store_ids)]
            yield (("PATCH", f"/api/v1/stores/{store_id}", {"name": name}),
                   _has_fields(name=name, id=store_id))
        else:
            raise ValueError(kind)


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """Drive `connections` keep-alive connections: warm up, then measure for `seconds`."""
    import httpx

    base_url: str = config["base_url"]
    if urlsplit(base_url).hostname != "127.0.0.1":
        raise SystemExit("the load generator only talks to 127.0.0.1")
    connections: int = config["connections"]
    expected: int = {"get": 200, "post": 201, "patch": 200}[config["kind"]]
    max_requests: int = config["max_requests"]
    headers = {"Authorization": f"Bearer {config['api_key']}"}
    failure: list[str] = []
    stop = threading.Event()
    issued = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(connections)]
    marks: dict[str, float | None] = {}

    def mark(name: str) -> Callable[[], None]:
        def record() -> None:
            marks[f"{name}_wall"] = time.perf_counter()
            marks[f"{name}_server_cpu"] = cpu_seconds(config["server_pid"])
            marks[f"{name}_client_cpu"] = time.process_time()
        return record

    started, finished = threading.Barrier(connections, mark("start")), threading.Barrier(
        connections, mark("end"))
    warmup_end = time.perf_counter() + config["warmup"]

    def fail(message: str) -> None:
        if not failure:
            failure.append(message)
        stop.set()
        started.abort()
        finished.abort()

    def worker(index: int) -> None:
        requests = _requests_for(config["kind"], index, config["tag"], config["store_ids"])
        sent = 0
        with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
            # A GET is the same every time: building it once keeps the client's own cost down,
            # which matters when the floor answers faster than one Python client can ask.
            get_request = client.build_request("GET", "/api/v1/stores")

            def one(record: bool) -> None:
                nonlocal sent
                (method, path, payload), check = next(requests)
                request = (get_request if method == "GET"
                           else client.build_request(method, path, json=payload))
                begin = time.perf_counter()
                response = client.send(request)
                elapsed = time.perf_counter() - begin
                if response.status_code != expected:
                    fail(f"{method} {path} answered {response.status_code}, expected {expected}: "
                         f"{response.text[:300]}")
                    return
                if sent % VALIDATE_EVERY == 0 and not check(response.json()):
                    fail(f"{method} {path}: unexpected body {response.text[:300]}")
                    return
                sent += 1
                if record:
                    latencies[index].append(elapsed)

            try:
                while not stop.is_set() and time.perf_counter() < warmup_end:
                    one(record=False)
                started.wait(timeout=60)
                deadline = marks["start_wall"] or 0.0
                deadline += config["seconds"]
                while (not stop.is_set() and time.perf_counter() < deadline
                       and next(issued) < max_requests):
                    one(record=True)
                finished.wait(timeout=60)
            except threading.BrokenBarrierError:
                if not failure:  # broken by a timeout rather than by another thread's failure
                    fail("a connection stalled for 60 s at the start or end of the measurement")
            except Exception as exc:  # a transport error is a failed benchmark, loudly
                fail(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=config["warmup"] + config["seconds"] + 90)
    if any(thread.is_alive() for thread in threads) and not failure:
        failure.append("load threads did not finish in time")
    if failure:
        return {"error": failure[0]}

    wall = (marks["end_wall"] or 0.0) - (marks["start_wall"] or 0.0)
    ordered = sorted(itertools.chain.from_iterable(latencies))
    start_cpu, end_cpu = marks["start_server_cpu"], marks["end_server_cpu"]
    server_cpu = end_cpu - start_cpu if start_cpu is not None and end_cpu is not None else None
    return {
        "requests": len(ordered), "seconds": wall,
        "rps": len(ordered) / wall if wall > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50) * 1000, "p99_ms": percentile(ordered, 0.99) * 1000,
        "server_cpu": server_cpu,
        "client_cpu": (marks["end_client_cpu"] or 0.0) - (marks["start_client_cpu"] or 0.0),
    }


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    operation: str
    server: str
    kind: str  # "framework", "sql" (floors) or "omniloop"
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float | None  # server CPU per request, microseconds
    server_util: float | None  # server CPU seconds per wall second
    client_util: float


OPERATIONS = {"get": f"GET /stores ({STORE_COUNT})", "post": "POST /stores",
              "patch": "PATCH /stores/{id}"}


def _measure(children: Children, server: Server, kind: str, label: str, flavour: str,
             seed_info: dict[str, Any], args: argparse.Namespace, tmp: Path,
             tag: str) -> Result:
    print(f"  {OPERATIONS[kind]:<20} {label} …", file=sys.stderr, flush=True)
    config = {"base_url": server.base_url, "kind": kind, "connections": args.connections,
              "warmup": args.warmup, "seconds": args.seconds,
              "max_requests": args.max_requests, "api_key": seed_info["api_key"],
              "store_ids": seed_info["store_ids"], "server_pid": server.process.pid, "tag": tag}
    outcome = run_child(children, __file__, "_load", config, child_env({}), tmp,
                         timeout=args.warmup + args.seconds + 120, cpu=1)
    if "error" in outcome:
        raise SystemExit(f"FAILED: {label}, {OPERATIONS[kind]}: {outcome['error']}\n"
                         f"server log tail:\n{server.log.read_text(errors='replace')[-2000:]}")
    if outcome["requests"] == 0:
        raise SystemExit(f"FAILED: {label}, {OPERATIONS[kind]}: no request completed")
    cpu = outcome["server_cpu"]
    return Result(operation=OPERATIONS[kind], server=label, kind=flavour,
                  requests=outcome["requests"], rps=outcome["rps"], p50_ms=outcome["p50_ms"],
                  p99_ms=outcome["p99_ms"],
                  server_cpu_us=cpu / outcome["requests"] * 1e6 if cpu is not None else None,
                  server_util=cpu / outcome["seconds"] if cpu is not None else None,
                  client_util=outcome["client_cpu"] / outcome["seconds"])


def _check_postgres_url(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if name in FORBIDDEN_PG_DATABASES or "bench" not in name:
        raise SystemExit(f"refusing to drop the schema of database '{name}': use a database "
                         "whose name contains 'bench' (e.g. omniloop_bench)")


def _run_omniloop(children: Children, label: str, url: str, tmp: Path, data_dir: Path,
                  args: argparse.Namespace, floor_db: Path | None,
                  results: list[Result]) -> tuple[dict[str, Any], bytes]:
    data_dir.mkdir()
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                      "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print(f"seeding {label} …", file=sys.stderr, flush=True)
    seed_info = run_child(children, __file__, "_seed",
                           {"url": url, "floor_db": str(floor_db) if floor_db else None},
                           env, data_dir, timeout=120)
    server = Server(children, label, "omniloop.app:create_app", env, data_dir,
                    tmp / f"{data_dir.name}.log", "/api/v1/stores")
    try:
        body = server.wait_ready({"Authorization": f"Bearer {seed_info['api_key']}"})
        for kind in ("get", "post", "patch"):  # GET first: POST adds stores
            results.append(_measure(children, server, kind, label, "omniloop", seed_info,
                                    args, tmp, tag=f"{data_dir.name[0].upper()}{kind[:2]}"))
    finally:
        server.stop()
    return seed_info, body


def _run_floors(children: Children, tmp: Path, body: bytes, floor_db: Path,
                seed_info: dict[str, Any], args: argparse.Namespace,
                results: list[Result]) -> None:
    body_file = tmp / "floor_body.json"
    body_file.write_bytes(body)
    env = child_env({"BENCH_FLOOR_BODY": str(body_file), "BENCH_FLOOR_DB": str(floor_db),
                      "BENCH_TENANT_ID": seed_info["tenant_id"]})
    floors = (("framework floor", "floor_json_app", "framework", ("get",)),
              ("raw-SQL floor (sqlite3)", "floor_sql_app", "sql", ("get", "post", "patch")))
    for label, factory, flavour, kinds in floors:
        server = Server(children, label, f"{MODULE}:{factory}", env, tmp,
                        tmp / f"{factory}.log", "/api/v1/stores", app_dir=BENCH_DIR)
        try:
            floor_body = server.wait_ready({})
            if flavour == "framework" and floor_body != body:
                raise SystemExit("the framework floor does not answer omniloop's body")
            for kind in kinds:
                results.append(_measure(children, server, kind, label, flavour, seed_info,
                                        args, tmp, tag=f"F{kind[:2]}"))
        finally:
            server.stop()


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "–"
    return f"{numerator / denominator:.1f}×"


def render(results: list[Result], markdown: bool) -> str:
    floors = {(r.operation, r.kind): r for r in results if r.kind != "omniloop"}
    header = ("operation", "server", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "srv CPU",
              "load CPU", "× fw floor", "× SQL floor")
    rows: list[tuple[str, ...]] = []
    order = {"framework": 0, "sql": 1, "omniloop": 2}
    for result in sorted(results, key=lambda r: (list(OPERATIONS.values()).index(r.operation),
                                                  order[r.kind])):
        cells = []
        for kind in ("framework", "sql"):
            floor = floors.get((result.operation, kind))
            if floor is None or floor is result or order[result.kind] <= order[kind]:
                cells.append("–")
            else:
                cells.append(f"{_ratio(floor.rps, result.rps)} / "
                             f"{_ratio(result.server_cpu_us, floor.server_cpu_us)}")
        rows.append((result.operation, result.server, f"{result.rps:,.0f}",
                     f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
                     f"{result.server_cpu_us:,.0f}" if result.server_cpu_us else "n/a",
                     f"{result.server_util:.0%}" if result.server_util is not None else "n/a",
                     f"{result.client_util:.0%}", *cells))
    return "\n".join(render_table(header, rows, markdown, left=(0, 1)))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cost of omniloop's API request path (GET/POST/PATCH /api/v1/stores) "
                    "against a bare FastAPI floor and a bare FastAPI + raw sqlite3 floor, "
                    "each served by its own uvicorn process on 127.0.0.1.",
        epilog="Ratios: 'A / B' = floor req/s ÷ omniloop req/s / omniloop server CPU per "
               "request ÷ floor's. Set OMNILOOP_BENCH_POSTGRES_URL (a database whose name "
               "contains 'bench'; its schema public is dropped) to add omniloop on PostgreSQL.")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measured duration of each scenario (default: 5)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="warm-up before each scenario, not measured (default: 1)")
    parser.add_argument("--connections", type=int, default=8,
                        help="concurrent keep-alive connections, one thread each (default: 8)")
    parser.add_argument("--max-requests", type=int, default=200_000,
                        help="stop a scenario after this many measured requests "
                             "(default: 200000)")
    parser.add_argument("--postgres-url", default=os.environ.get("OMNILOOP_BENCH_POSTGRES_URL"),
                        help="also run omniloop on this PostgreSQL database "
                             "(default: $OMNILOOP_BENCH_POSTGRES_URL; unset: skipped)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server to the first CPU and the load generator to "
                             "the second (pinning needs Linux and 2 CPUs)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table as Markdown (for docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.connections < 1 or args.max_requests < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --connections and "
                     "--max-requests >= 1")
    if args.postgres_url:
        _check_postgres_url(args.postgres_url)
    return args


def run(args: argparse.Namespace, children: Children,
        tmp: Path) -> tuple[list[Result], bytes]:
    results: list[Result] = []
    floor_db = tmp / "floor.db"
    sqlite_url = f"sqlite:///{(tmp / 'sqlite' / 'bench.db').as_posix()}"
    seed_info, body = _run_omniloop(children, "omniloop (SQLite)", sqlite_url, tmp,
                                    tmp / "sqlite", args, floor_db, results)
    _run_floors(children, tmp, body, floor_db, seed_info, args, results)
    if args.postgres_url:
        _run_omniloop(children, "omniloop (PostgreSQL)", args.postgres_url, tmp,
                      tmp / "postgres", args, None, results)
    return results, body


def report(results: list[Result], body: bytes, args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None) -> str:
    lines = [f"omniloop API baseline: {args.connections} keep-alive connections, "
             f"{args.warmup:g} s warm-up + {args.seconds:g} s per scenario, "
             f"GET body {len(body):,} bytes, "
             f"{'server and load generator pinned to a CPU each' if pinned else 'unpinned'}"]
    if load is not None:
        lines.append(f"1-minute load average before / after the run: {load[0]:.2f} / "
                     f"{load[1]:.2f} (anything else running skews the figures)")
    lines += [machine_line("fastapi", "starlette", "pydantic", "SQLAlchemy", "uvicorn",
                           "httpx"),
              "", render(results, args.markdown), "",
              "× columns: floor req/s ÷ this req/s / this server CPU per request ÷ floor's. "
              "srv CPU / load CPU: CPU seconds per wall second of the server / load generator."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    found = run_bench(
        "omniloop-bench-", pin=not args.no_pin,
        work=lambda children, tmp: run(args, children, tmp),
        report=lambda result, pin, load: report(*result, args, pin, load))
    return 130 if found is None else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load"):
        task = seed if sys.argv[1] == "_seed" else run_load
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
