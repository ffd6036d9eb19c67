"""What the benchmarks share: child processes (pinned to a CPU each when asked, all ended
with the run), a uvicorn server on a free loopback port, and reading CPU time and versions.

Each bench script runs its load generator and floors as child processes of itself
(`script MODE CONFIG-JSON`), so the server, the load and the floor never share a GIL.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT = 30.0  # seconds a server may take to answer its probe


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
