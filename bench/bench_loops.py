"""`/t/<code>` (a table touchpoint) and `/r/<code>` (a short link) through HTTP, on SQLite.

omniloop runs as `omniloop serve` runs it: one uvicorn process (`omniloop.app:create_app`,
uvloop + httptools, no access log) on 127.0.0.1, on a fresh SQLite database seeded through
the service functions with one brand, one store, 50 table touchpoints (purpose: join, 20
points, so every scan renders the landing page with its incentive and disclosure) and one
short link with UTM parameters.

A separate load process (pinned to the second CPU; the server gets the first) keeps
`--connections` (64) keep-alive HTTP/1.1 connections busy:

  scan   GET /t/<code> of a random table, as a first-time phone (no cookie): the answer must
         be 200 with the page and a Set-Cookie for the device id.
  click  GET /r/<code> with a browser's user agent and utm_campaign: the answer must be 302
         to the target with the UTM parameters.

Each phase runs as a closed loop (every connection sends its next request as soon as the
answer is in: 64 phones with no think time, the issue's condition) and then paced at
`--paced-rate` per second in all (latency counted from when a request was due, so a server
falling behind shows it). Afterwards the server is stopped (its recorder writes what is
pending on the way out) and the database is checked: exactly one `qr_scan` event per scan
answered, one `link_click` event per click, and the link's counter equal to the clicks.

Target (issue 6): p99 ≤ 20 ms at 64 concurrent clients for both. PASS/FAIL lines are printed;
the exit status is 1 only for a failed run, or with --strict for a missed target too.

Internal modes: `_seed <json>`, `_load <json>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import (
    Children,
    Server,
    child_env,
    cpu_model,
    cpu_seconds,
    exchange,
    percentile,
    run_bench,
    run_child,
    run_loop,
    seed_brand,
)

TABLES = 50
TARGET_P99_MS = 20.0
CHROME = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0 Mobile Safari/537.36")


def seed(config: dict[str, Any]) -> dict[str, Any]:
    """A brand, a store, the table touchpoints and a short link, through the services."""
    from omniloop.loops import links, touchpoints
    from omniloop.loops.models import Placement, Purpose

    brand = seed_brand(config["url"], [{"code": "TPE01", "name": "信義店"}])
    database, actor, store_id = brand.database, brand.actor, brand.store_ids[0]
    with database.unit_of_work() as session:
        made = touchpoints.create_tables(session, actor, store_id, 1, TABLES,
                                         touchpoints.TouchpointData(
                                             store_id=store_id, placement=Placement.table,
                                             purpose=Purpose.membership, reward_points=20))
        link = links.create_link(session, actor, name="bench", target_url=
                                 "https://shop.example/spring", utm_source="instagram",
                                 utm_medium="social")
        codes = [t.code for t in made]
        link_code = link.code
    database.dispose()
    return {"codes": codes, "link": link_code}


def floor_app() -> Any:
    """The framework floor: FastAPI alone, one route each answering what omniloop answers
    (a page of the same size with the device cookie; a 302 with the UTM parameters), no
    middleware, no templates, no recorder. What any FastAPI service pays per request here."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, RedirectResponse

    app = FastAPI()
    page = "<html><body><p data-disclosure>x</p>" + "." * 4000 + "</body></html>"

    @app.get("/t/{code}")
    async def scan(code: str) -> HTMLResponse:
        response = HTMLResponse(page)
        response.set_cookie("ol_device", secrets.token_urlsafe(18), httponly=True)
        return response

    @app.get("/r/{code}")
    async def click(code: str, utm_campaign: str = "") -> RedirectResponse:
        return RedirectResponse(f"https://shop.example/spring?utm_campaign={utm_campaign}",
                                status_code=302)

    return app


def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """Closed loop (no `rate`) or paced; `warmup` seconds unmeasured, then `seconds`."""
    parts = urlsplit(config["base_url"])
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("the load generator only talks to 127.0.0.1:<port>")
    host, port = parts.hostname, parts.port
    draw = random.Random(config["seed"])
    kind = config["kind"]
    answered = [0]

    def next_request() -> bytes:
        if kind == "scan":
            path = f"/t/{draw.choice(config['codes'])}"
        else:
            path = f"/r/{config['link']}?utm_campaign=spring"
        return (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {CHROME}\r\n"
                "Accept: text/html\r\n\r\n").encode()

    def check(status: int, head: bytes, body: bytes) -> str | None:
        if kind == "scan":
            if status != 200 or b"ol_device=" not in head or b"data-disclosure" not in body:
                return f"scan answered {status}: {body[:200]!r}"
        elif status != 302 or b"utm_campaign=spring" not in head:
            return f"click answered {status}: {head[:300]!r}"
        answered[0] += 1
        return None

    async def main() -> dict[str, Any]:
        opened = [await asyncio.open_connection(host, port)
                  for _ in range(config["connections"])]
        latencies: list[float] = []
        failure: list[str] = []
        marks: dict[str, float] = {}
        begin = time.perf_counter()
        measure_from = begin + config["warmup"]
        deadline = measure_from + config["seconds"]
        rate: float | None = config.get("rate")
        interval = len(opened) / rate if rate else 0.0

        async def mark_start() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            marks["server_cpu"] = cpu_seconds(config["server_pid"]) or 0.0

        async def worker(index: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
            clock = time.perf_counter
            due = begin + index / rate if rate else 0.0
            while not failure:
                if rate:
                    wait = due - clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                start = clock()
                since = due if rate else start
                due += interval
                if since >= deadline:
                    return
                status, head, body = await exchange(reader, writer, next_request(),
                                                    keep_alive=False)
                end = clock()
                problem = check(status, head, body)
                if problem:
                    failure.append(problem)
                    return
                if since >= measure_from:
                    latencies.append(end - since)

        try:
            results = await asyncio.gather(
                mark_start(), *(worker(i, r, w) for i, (r, w) in enumerate(opened)),
                return_exceptions=True)
        finally:
            for _, writer in opened:
                writer.close()
        end_cpu = cpu_seconds(config["server_pid"])
        for result in results:
            if isinstance(result, BaseException):
                failure.append(f"{type(result).__name__}: {result}")
        if failure:
            return {"error": failure[0]}
        ordered = sorted(latencies)
        return {"requests": len(ordered), "answered": answered[0], "seconds": config["seconds"],
                "p50_ms": percentile(ordered, 0.5) * 1000,
                "p99_ms": percentile(ordered, 0.99) * 1000,
                "max_ms": (ordered[-1] if ordered else 0.0) * 1000,
                "server_cpu": (end_cpu - marks["server_cpu"])
                if end_cpu is not None and "server_cpu" in marks else None}

    return run_loop(main)


@dataclass
class Phase:
    kind: str
    paced: bool
    floor: bool
    requests: int
    answered: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float | None


def run(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    data_dir = tmp / "omniloop"
    data_dir.mkdir()
    db_path = data_dir / "bench.db"
    url = f"sqlite:///{db_path.as_posix()}"
    env = child_env({"OMNILOOP_DATA_DIR": str(data_dir), "OMNILOOP_DATABASE_URL": url,
                     "OMNILOOP_SECRET_KEY": secrets.token_urlsafe(32)})
    print("seeding …", file=sys.stderr, flush=True)
    seeded = run_child(children, __file__, "_seed", {"url": url}, env, data_dir, timeout=120)
    server = Server(children, "omniloop", "omniloop.app:create_app", env, data_dir,
                    tmp / "server.log", probe=f"/t/{seeded['codes'][0]}")
    phases: list[Phase] = []
    if not args.no_floor:
        floor = Server(children, "floor", "bench_loops:floor_app", env, data_dir,
                       tmp / "floor.log", probe="/t/X", app_dir=Path(__file__).parent)
        try:
            floor.wait_ready({})
            for kind in ("scan", "click"):
                print(f"framework floor, {kind}: closed loop …", file=sys.stderr, flush=True)
                outcome = run_child(children, __file__, "_load", {
                    "base_url": floor.base_url, "server_pid": floor.process.pid,
                    "connections": args.connections, "warmup": args.warmup,
                    "seconds": args.seconds, "rate": None, "kind": kind, "seed": 99,
                    **seeded}, child_env({}), tmp, timeout=args.warmup + args.seconds + 120,
                    cpu=1)
                if "error" in outcome:
                    raise SystemExit(f"FAILED: floor {kind}: {outcome['error']}")
                phases.append(Phase(kind=kind, paced=False, floor=True, **outcome))
        finally:
            floor.stop()
    try:
        server.wait_ready({})
        for kind in ("scan", "click"):
            for paced in (False, True):
                if paced and not args.paced_rate:
                    continue
                how = f"paced at {args.paced_rate:g}/s" if paced else "closed loop"
                print(f"{kind}: {args.connections} connections, {how} …", file=sys.stderr,
                      flush=True)
                outcome = run_child(children, __file__, "_load", {
                    "base_url": server.base_url, "server_pid": server.process.pid,
                    "connections": args.connections, "warmup": args.warmup,
                    "seconds": args.seconds, "rate": args.paced_rate if paced else None,
                    "kind": kind, "seed": len(phases) + 1, **seeded}, child_env({}), tmp,
                    timeout=args.warmup + args.seconds + 120, cpu=1)
                if "error" in outcome:
                    raise SystemExit(f"FAILED: {kind} ({how}): {outcome['error']}\n"
                                     f"{server.log.read_text(errors='replace')[-2000:]}")
                phases.append(Phase(kind=kind, paced=paced, floor=False, **outcome))
    finally:
        server.stop()  # SIGTERM: the recorder writes what is pending on the way out
    probe_scans = 1  # the readiness probe scanned once
    with sqlite3.connect(db_path) as connection:
        scans = connection.execute("SELECT count(*) FROM events WHERE type='qr_scan'").fetchone()
        clicks = connection.execute(
            "SELECT count(*) FROM events WHERE type='link_click'").fetchone()
        counter = connection.execute("SELECT clicks FROM short_links").fetchone()
    answered = {k: sum(p.answered for p in phases if p.kind == k and not p.floor)
                for k in ("scan", "click")}
    checked = {"scan_events": scans[0], "scans_answered": answered["scan"] + probe_scans,
               "click_events": clicks[0], "clicks_answered": answered["click"],
               "link_counter": counter[0]}
    if (checked["scan_events"] != checked["scans_answered"]
            or checked["click_events"] != checked["clicks_answered"]
            or checked["link_counter"] != checked["clicks_answered"]):
        raise SystemExit(f"FAILED: recorded events do not match the answers: {checked}")
    return {"phases": phases, "checked": checked}


def report(result: dict[str, Any], args: argparse.Namespace, pinned: bool,
           load: tuple[float, float] | None) -> str:
    lines = [f"machine: {cpu_model()}; pinned: {pinned}; load average before/after: {load}",
             "| URL | server | load | requests | per s | p50 ms | p99 ms | max ms | "
             "server CPU µs/req |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in result["phases"]:
        path = "/t/<code>" if p.kind == "scan" else "/r/<code>"
        how = f"paced {args.paced_rate:g}/s" if p.paced else "closed loop"
        cpu = (f"{p.server_cpu / p.requests * 1e6:,.0f}" if p.server_cpu and p.requests
               else "?")
        server = "FastAPI floor" if p.floor else "omniloop"
        lines.append(f"| {path} | {server} | {args.connections} conn, {how} | {p.requests:,} | "
                     f"{p.requests / p.seconds:,.0f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | "
                     f"{p.max_ms:.1f} | {cpu} |")
    lines.append(f"database check: {result['checked']}")
    for p in result["phases"]:
        if p.floor:
            continue
        verdict = "PASS" if p.p99_ms <= TARGET_P99_MS else "FAIL"
        how = "paced" if p.paced else "closed loop"
        lines.append(f"{verdict}: {p.kind} p99 {p.p99_ms:.1f} ms ≤ {TARGET_P99_MS:g} ms "
                     f"({args.connections} clients, {how})")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--paced-rate", type=float, default=200.0,
                        help="requests per second in all for the paced phases (0: skip)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the FastAPI-alone floor")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = run_bench("omniloop-bench-loops-", pin=not args.no_pin,
                       work=lambda children, tmp: run(args, children, tmp),
                       report=lambda found, pin, load: report(found, args, pin, load))
    if result is None:
        return 130
    missed = any(p.p99_ms > TARGET_P99_MS for p in result["phases"]
                 if not p.paced and not p.floor)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_load"):
        task = {"_seed": seed, "_load": run_load}[sys.argv[1]]
        print(json.dumps(task(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
