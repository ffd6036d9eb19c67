"""Analytics pages on the demo brand: p50 / p95 / max of each page. Target (issue 8): p95 ≤
500 ms.

The data is the demo brand that `omniloop demo` loads (8 stores, about 1,500 members, 18
months of orders, campaigns with a holdout). Without `--database-url`, a child process loads
it into a fresh SQLite database in a temporary directory first (about three minutes on a
2-core machine); with `--database-url`, an existing demo database is used as it is.

The server is `omniloop.app:create_app` under uvicorn in its own process, as `omniloop serve`
runs it. One client signs in as the demo owner through the login form, opens each page a few
times to warm up, then `--requests` times one after another; every answer must be 200 with
the page's own heading, or the run fails. Each page computes its figures from the rows at
every request (nothing is cached between requests).

Usage: `.venv/bin/python bench/bench_analytics_pages.py [--database-url URL] [--requests N]`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from harness import Children, Server, child_env, cpu_model, run_bench

TARGET_P95_MS = 500.0
OWNER = "owner@beanhouse.demo"
PASSWORD = "demo-1234!"
PAGES = [
    ("store dashboard, last 30 days", "/admin/analytics", "data-figure=\"sales\""),
    ("store dashboard, 18 months", "/admin/analytics?start=2025-05-24&end=2026-11-24",
     "data-figure=\"sales\""),
    ("campaign lift (win-back, with holdout)", "{lift}", "data-verdict="),
    ("RFM segments", "/admin/analytics/rfm", "data-segment=\"champions\""),
    ("CLV", "/admin/analytics/clv", "data-figure=\"clv365\""),
]


def load_demo(tmp: Path) -> str:
    env = child_env({"OMNILOOP_DATA_DIR": str(tmp)})
    env.pop("OMNILOOP_DATABASE_URL", None)
    print("loading the demo brand (omniloop demo)…", file=sys.stderr)
    subprocess.run([str(Path(sys.executable).with_name("omniloop")), "demo"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return f"sqlite:///{tmp / 'omniloop.db'}"


def sign_in(client: httpx.Client) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "no login form"
    answer = client.post("/admin/login", data={
        "csrf_token": token.group(1), "email": OWNER, "password": PASSWORD,
        "brand": "beanhouse", "next": "/admin"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def work(args: argparse.Namespace, children: Children, tmp: Path) -> list[tuple[str, list[float]]]:
    url = args.database_url or load_demo(tmp)
    from omniloop.core.db import Database
    from omniloop.core.migrate import upgrade

    database = Database(url)
    upgrade(database.engine)  # as `omniloop serve` does before serving
    database.dispose()
    env = child_env({"OMNILOOP_DATABASE_URL": url, "OMNILOOP_DATA_DIR": str(tmp)})
    server = Server(children, "omniloop", "omniloop.app:create_app", env, tmp,
                    tmp / "server.log", "/healthz")
    server.wait_ready({})
    results: list[tuple[str, list[float]]] = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sign_in(client)
        listing = client.get("/admin/analytics/campaigns").text
        ids = re.findall(r'data-campaign="([0-9A-Z]{26})"><td>[^<]*<a[^>]*>[^<]*</a></td>'
                         r'<td>[^<]*</td><td class="num">10%', listing)
        lift = f"/admin/analytics/campaigns/{ids[0]}" if ids else None
        for name, path, marker in PAGES:
            if path == "{lift}":
                if lift is None:
                    continue
                path = lift
            times = []
            for i in range(args.warmup + args.requests):
                begin = time.perf_counter()
                answer = client.get(path)
                elapsed = time.perf_counter() - begin
                if answer.status_code != 200 or marker not in answer.text:
                    raise SystemExit(f"{path}: {answer.status_code}\n{answer.text[:500]}")
                if i >= args.warmup:
                    times.append(elapsed * 1000)
            results.append((name, times))
    server.stop()
    return results


def report(results: list[tuple[str, list[float]]], load: tuple[float, float] | None) -> str:
    lines = [f"analytics pages on the demo brand; {cpu_model()}, {os.cpu_count()} CPUs", "",
             "| page | p50 ms | p95 ms | max ms | p95 ≤ 500 ms |", "|---|---:|---:|---:|---|"]
    for name, times in results:
        ordered = sorted(times)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        lines.append(f"| {name} | {statistics.median(ordered):.0f} | {p95:.0f} | "
                     f"{ordered[-1]:.0f} | {'met' if p95 <= TARGET_P95_MS else 'MISSED'} |")
    if load is not None:
        lines.append(f"\nload average (1 min) before {load[0]:.2f}, after {load[1]:.2f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an existing demo database (else: load one)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    found = run_bench("omniloop-bench-analytics-pages-", pin=False,
                      work=lambda children, tmp: work(args, children, tmp),
                      report=lambda r, _pin, load: report(r, load))
    return 130 if found is None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
