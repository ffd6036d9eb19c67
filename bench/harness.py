"""What the benchmarks share: child processes (pinned to a CPU each when asked, all ended
with the run), a uvicorn server on a free loopback port, reading CPU time and versions, the
bench brand seeded through the service functions (`seed_brand`), the lean HTTP/1.1 load
generator (`drive` for a list of requests, `timed_phase` for a closed-loop or paced phase,
`Phase`/`phase_from` for its figures) and the pieces of the reports (`machine_line`,
`load_line`, `render_table`).

Each bench script runs its load generator and floors as child processes of itself
(`script MODE CONFIG-JSON`), so the server, the load and the floor never share a GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

START_TIMEOUT = 30.0  # seconds a server may take to answer its probe
T = TypeVar("T")


class Children:
    """Every process this run starts, so that all of them end with it."""

    def __init__(self, pin: bool) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        # Server on the first CPU, load generator on the second: each gets a core of its own
        # and neither pays for the other's scheduling.
        self.pin = pin and hasattr(os, "sched_setaffinity") and len(self.cpus()) >= 2

    @staticmethod
    def cpus() -> list[int]:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def start(self, args: list[str], env: dict[str, str], cwd: Path,
              log: Path | None = None, cpu: int | None = None) -> subprocess.Popen[bytes]:
        # A session of their own: Ctrl-C reaches this process only, which then stops them.
        if log is None:
            process = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        else:
            with log.open("wb") as output:
                process = subprocess.Popen(args, env=env, cwd=cwd, stdout=output,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        if self.pin and cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(process.pid, {self.cpus()[cpu]})
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(self.processes):
            self.stop(process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNILOOP_", "BENCH_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_child(children: Children, script: str, mode: str, config: dict[str, Any],
              env: dict[str, str], cwd: Path, timeout: float,
              cpu: int | None = None) -> dict[str, Any]:
    """Run `script` again as `script MODE CONFIG-JSON` and return the JSON it prints last."""
    process = children.start([sys.executable, str(Path(script).resolve()), mode,
                              json.dumps(config)], env, cwd, cpu=cpu)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        children.stop(process)
        raise SystemExit(f"{mode} did not finish within {timeout:.0f} s") from None
    children.stop(process)
    if process.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {process.returncode}):\n"
                         f"{err.decode(errors='replace')[-3000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


class Server:
    def __init__(self, children: Children, name: str, target: str, env: dict[str, str],
                 cwd: Path, log: Path, probe: str, app_dir: Path | None = None) -> None:
        self.children, self.name, self.log, self.probe = children, name, log, probe
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
                "--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        if app_dir is not None:
            args += ["--app-dir", str(app_dir)]
        self.process = children.start(args, env, cwd, log, cpu=0)

    def wait_ready(self, headers: dict[str, str]) -> bytes:

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                response = httpx.get(self.base_url + self.probe, headers=headers, timeout=5)
                if response.status_code == 200:
                    return response.content
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.children.stop(self.process)
        raise SystemExit(f"{self.name} did not start on {self.base_url}:\n"
                         f"{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        self.children.stop(self.process)



def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")



def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine_line(*packages: str) -> str:
    """The report line naming the machine, Python, SQLite and the versions of `packages`
    (as they are to be printed; looked up in lower case)."""
    return (f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}"
            + "".join(f", {name} {version(name.lower())}" for name in packages))


def load_line(load: tuple[float, float]) -> str:
    """The report line with the 1-minute load average before and after the run."""
    return (f"1-minute load average before / after: {load[0]:.2f} / {load[1]:.2f} "
            "(anything else running skews the figures)")


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool,
                 left: Sequence[int] = (0,)) -> list[str]:
    """A report table as lines: Markdown, or plain text with aligned columns (the columns
    in `left` aligned left, the others right)."""
    if markdown:
        align = "".join("---|" if i in left else "---:|" for i in range(len(header)))
        return (["| " + " | ".join(header) + " |", "|" + align]
                + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    table = ["  ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i])
                       for i, c in enumerate(r)) for r in (header, *rows)]
    table.insert(1, "  ".join("-" * w for w in widths))
    return table


# --------------------------------------------------------------------------------------------
# Seeding (in a child process with the server's OMNILOOP_* environment)
# --------------------------------------------------------------------------------------------

@dataclass
class Brand:
    """What `seed_brand` made; the database stays the current one (`set_database`)."""
    database: Any  # omniloop.core.db.Database
    tenant_id: str
    actor: Any  # omniloop.tenancy.access.Actor
    store_ids: list[str]
    api_key: str | None


def seed_brand(url: str, stores: Sequence[dict[str, Any]] = (), scopes: Sequence[str] = (),
               key_name: str = "bench", actor_label: str = "system",
               reset_schema: bool = False) -> Brand:
    """Migrate a fresh database and make the bench brand (`bench`, "Bench Coffee") through
    the service functions: `stores` (StoreCreate bodies) and, with `scopes`, an API key.
    `reset_schema` drops and recreates the schema `public` first on PostgreSQL."""
    from omniloop import models  # noqa: F401  (every table, for the mappers)
    from omniloop.core.db import Database, set_database
    from omniloop.core.migrate import upgrade
    from omniloop.tenancy import apikeys, tenants
    from omniloop.tenancy import stores as store_service
    from omniloop.tenancy.access import system_actor
    from omniloop.tenancy.models import ApiScope
    from omniloop.tenancy.schemas import ApiKeyCreate, StoreCreate

    database = Database(url)
    set_database(database)
    if reset_schema and database.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with database.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    upgrade(database.engine)
    with database.unit_of_work() as session:
        tenant_id = tenants.create_tenant(session, slug="bench", name="Bench Coffee").id
    actor = system_actor(tenant_id, actor_label)
    store_ids: list[str] = []
    secret = None
    if stores or scopes:
        with database.unit_of_work() as session:
            store_ids = [store_service.create_store(
                session, actor, StoreCreate.model_validate(body)).id for body in stores]
            if scopes:
                _, secret = apikeys.create_api_key(session, actor, ApiKeyCreate(
                    name=key_name, scopes=[ApiScope(scope) for scope in scopes]))
    return Brand(database, tenant_id, actor, store_ids, secret)


def copy_database(url: str, target: str | Path) -> None:
    """A copy of the SQLite database at `url` (sqlite:///path), for a floor."""
    with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as source, \
            contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)


# --------------------------------------------------------------------------------------------
# Timed phases
# --------------------------------------------------------------------------------------------

@dataclass
class Phase:
    """A measured phase of a load process (closed loop or paced)."""
    requests: int
    seconds: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float | None
    client_cpu: float
    exhausted: bool = False  # ran out of prepared requests before the time was up

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def phase_from(outcome: dict[str, Any]) -> Phase:
    """The Phase of a load process's answer (its other keys are left out)."""
    return Phase(**{name: outcome[name] for name in Phase.__dataclass_fields__
                    if name in outcome})


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted values; 0.0 for none."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


# --------------------------------------------------------------------------------------------
# A lean load generator
# --------------------------------------------------------------------------------------------
#
# httpx costs its process about 250 µs of CPU per request; a server answering in less than
# that makes one Python load process the bottleneck (the framework floor of
# bench_api_baseline.py shows it). This client speaks just enough HTTP/1.1 for these benches
# over keep-alive connections on one asyncio loop (uvloop when installed): it sends prepared
# bytes and reads the status line, the headers and a Content-Length body; anything else
# (chunked responses, a closed connection) fails the run.

Check = Callable[[int, bytes], "str | None"]


async def read_response(reader: asyncio.StreamReader,
                        keep_alive: bool = False) -> tuple[int, bytes, bytes]:
    """Read one answer: its status, its head (status line and headers) and its body. With
    `keep_alive`, an answer that closes the connection fails."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by the load generator")
        elif keep_alive and name == b"connection" and value.strip().lower() == b"close":
            raise RuntimeError("the server closed the keep-alive connection")
    if length is None:
        raise RuntimeError("a response without Content-Length")
    return status, head, await reader.readexactly(length)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes, keep_alive: bool = True) -> tuple[int, bytes, bytes]:
    """Send one request on a keep-alive connection and read its answer (`read_response`)."""
    writer.write(request)
    return await read_response(reader, keep_alive)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        if len(request) > 65536:
            await self.writer.drain()
        status, _head, body = await read_response(self.reader)
        return status, body

    def close(self) -> None:
        self.writer.close()


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def timed_phase(opened: Sequence[Streams],
                      next_request: Callable[[], tuple[bytes, Check] | None], *,
                      warmup: float, seconds: float, rate: float | None,
                      server_pid: int) -> dict[str, Any]:
    """One phase over the `opened` keep-alive connections: `warmup` seconds unmeasured, then
    `seconds`. Without a `rate`, each connection sends its next request as soon as the answer
    is in (a closed loop). With one, requests are due at `rate` per second in all, in turn
    over the connections, and each request's latency counts from when it was due, so a
    server that falls behind shows it (no coordinated omission). `next_request()` gives the
    request and its check, or None when there are no more (the phase ends, `exhausted`).

    Returns requests, seconds (start of the measurement to the last answer), mean_ms,
    p50_ms, p95_ms, p99_ms, max_ms, server_cpu, client_cpu and exhausted; or {"error": ...}.
    """
    latencies: list[float] = []
    failure: list[str] = []
    marks: dict[str, float] = {}
    begin = time.perf_counter()
    measure_from = begin + warmup
    deadline = measure_from + seconds
    last_end = [measure_from]
    exhausted = [False]

    async def mark_start() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        marks["server_cpu"] = cpu_seconds(server_pid) or 0.0
        marks["client_cpu"] = time.process_time()

    interval = len(opened) / rate if rate else 0.0

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
            item = next_request()
            if item is None:
                exhausted[0] = True
                return
            request, check = item
            status, _head, body = await exchange(reader, writer, request)
            end = clock()
            problem = check(status, body)
            if problem:
                failure.append(problem)
                return
            if since >= measure_from:
                latencies.append(end - since)
                last_end[0] = max(last_end[0], end)

    results = await asyncio.gather(
        mark_start(), *(worker(i, r, w) for i, (r, w) in enumerate(opened)),
        return_exceptions=True)
    end_server = cpu_seconds(server_pid)
    client_cpu = time.process_time() - marks.get("client_cpu", 0.0)
    for result in results:
        if isinstance(result, BaseException):
            failure.append(f"{type(result).__name__}: {result}")
    if failure:
        return {"error": failure[0]}
    ordered = sorted(latencies)
    return {
        "requests": len(ordered), "seconds": last_end[0] - measure_from,
        "mean_ms": sum(ordered) / len(ordered) * 1000 if ordered else 0.0,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p95_ms": percentile(ordered, 0.95) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1000,
        "server_cpu": (end_server - marks["server_cpu"]) if end_server is not None
        and "server_cpu" in marks else None,
        "client_cpu": client_cpu, "exhausted": exhausted[0]}


def run_loop(main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """Run a load process's `main()` on uvloop when installed, else on asyncio."""
    try:
        import uvloop
        return dict(uvloop.run(main()))
    except ImportError:
        return dict(asyncio.run(main()))


def post_requests(base_url: str, path: str, headers: dict[str, str],
                  bodies: Sequence[bytes]) -> list[bytes]:
    """Each body as the complete bytes of an HTTP/1.1 POST to `path` on the keep-alive
    connection."""
    host = urlsplit(base_url).netloc
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return [(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]


def drive(base_url: str, requests: Sequence[bytes], *, warmup: int, connections: int,
          seconds: float, check: Check, server_pid: int | None) -> dict[str, Any]:
    """Send `requests` (from `post_requests`): the first `warmup` one after another, unmeasured,
    then the rest over `connections` keep-alive connections until they run out or `seconds`
    have passed. `check(status, body)` returns a problem, which ends the run, or None.

    Returns requests, seconds (wall, first request to last answer), server_cpu (seconds, from
    /proc), client_cpu, p50_ms, p99_ms and exhausted; or {"error": ...}.
    """
    parts = urlsplit(base_url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("the load generator only talks to 127.0.0.1:<port>")
    host, port = parts.hostname, parts.port
    try:
        import uvloop
        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> dict[str, Any]:
        opened = [_Connection(*await asyncio.open_connection(host, port))
                  for _ in range(connections)]
        try:
            for request in requests[:warmup]:
                status, body = await opened[0].send(request)
                problem = check(status, body)
                if problem:
                    return {"error": problem}
            pending = iter(requests[warmup:])
            latencies: list[float] = []
            failure: list[str] = []
            start_wall = time.perf_counter()
            start_cpu = cpu_seconds(server_pid) if server_pid is not None else None
            start_client = time.process_time()
            deadline = start_wall + seconds

            async def worker(connection: _Connection) -> None:
                clock = time.perf_counter
                for request in pending:
                    begin = clock()
                    status, body = await connection.send(request)
                    end = clock()
                    latencies.append(end - begin)
                    problem = check(status, body)
                    if problem:
                        failure.append(problem)
                    if failure or end >= deadline:
                        return

            results = await asyncio.gather(*(worker(c) for c in opened),
                                           return_exceptions=True)
            wall = time.perf_counter() - start_wall
            end_cpu = cpu_seconds(server_pid) if server_pid is not None else None
            client_cpu = time.process_time() - start_client
            for result in results:
                if isinstance(result, BaseException):
                    failure.append(f"{type(result).__name__}: {result}")
            if failure:
                return {"error": failure[0]}
            ordered = sorted(latencies)
            return {"requests": len(ordered), "seconds": wall,
                    "server_cpu": end_cpu - start_cpu
                    if end_cpu is not None and start_cpu is not None else None,
                    "client_cpu": client_cpu,
                    "p50_ms": percentile(ordered, 0.5) * 1000,
                    "p99_ms": percentile(ordered, 0.99) * 1000,
                    "exhausted": len(ordered) == len(requests) - warmup}
        finally:
            for connection in opened:
                connection.close()

    return dict(runner(main()))


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_bench(prefix: str, *, pin: bool, work: Callable[[Children, Path], T],
              report: Callable[[T, bool, tuple[float, float] | None], str]) -> T | None:
    """Run a benchmark's `work` in a temporary directory with its child processes, then
    print its report (with the load average before and after) and the wall time.

    Every child ends with the run, also on SIGTERM or Ctrl-C; None means interrupted.
    """
    signal.signal(signal.SIGTERM, _terminate)
    children = Children(pin=pin)
    started = time.monotonic()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
            result = work(children, Path(tmp_name))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return None
    finally:
        children.stop_all()
    load = (load_before, os.getloadavg()[0]) if load_before is not None else None
    print(report(result, children.pin, load))
    print(f"total {time.monotonic() - started:.0f} s")
    return result


def floor_connection(path: str) -> sqlite3.Connection:
    """A bare sqlite3 connection with the settings omniloop gives its SQLite write connection
    (core/db.py), for floors that insert the same rows without omniloop in between."""
    from omniloop.core.db import SQLITE_WAL_AUTOCHECKPOINT, SQLITE_WRITE_CACHE_KIB

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
    conn.execute(f"PRAGMA cache_size=-{SQLITE_WRITE_CACHE_KIB}")
    return conn


def add_report_options(parser: argparse.ArgumentParser,
                       pinned: str = "the server to the first CPU and the load process to "
                                     "the second") -> None:
    """The options every bench with a target shares: --no-pin, --markdown, --strict."""
    parser.add_argument("--no-pin", action="store_true", help=f"do not pin {pinned}")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table as Markdown (for docs/benchmarks.md)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed (by default only a "
                             "failed run does)")
