"""`omniloop serve --with-worker` as a real process: the web server answers, its worker child
sends what the outbox holds to the LINE stand-in, and both stop together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from omniloop.core.db import Database
from omniloop.messaging import channels, line_messages
from omniloop.messaging.models import OutboxChannel, Purpose
from omniloop.messaging.outbox import Draft, enqueue
from omniloop.tenancy import tenants
from omniloop.tenancy.access import system_actor
from tests.messaging.conftest import LINE_SECRET, LINE_TOKEN, line_user
from tests.messaging.standins import LineStandIn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_with_worker_sends_and_stops_together(tmp_path: Path, line: LineStandIn) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    env = dict(os.environ, OMNILOOP_DATA_DIR=str(tmp_path), OMNILOOP_DATABASE_URL=url,
               OMNILOOP_LINE_API_BASE_URL=line.url)
    env.pop("OMNILOOP_REDIS_URL", None)
    command = [sys.executable, "-m", "omniloop.cli"]
    subprocess.run([*command, "init"], env=env, check=True, capture_output=True, timeout=120)
    database = Database(url)
    user = line_user()
    try:
        with database.unit_of_work() as session:
            tenant = tenants.create_tenant(session, slug="servebrand", name="Serve")
            actor = system_actor(tenant.id)
            channels.save_channel(session, actor, OutboxChannel.line, {}, {
                "channel_access_token": LINE_TOKEN, "channel_secret": LINE_SECRET})
            enqueue(session, actor, Draft(OutboxChannel.line, Purpose.transactional, user,
                                          "hello", {"messages": [line_messages.text("hi")]}))
    finally:
        database.dispose()

    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen([*command, "serve", "--port", str(port), "--with-worker"],
                                  env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        healthy = False
        while time.monotonic() < deadline and not (healthy and line.deliveries[user]):
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2
                                    ).status_code == 200
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert healthy, log.read_text(errors="replace")[-2000:]
        assert line.deliveries[user] == 1, log.read_text(errors="replace")[-2000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    text = log.read_text(errors="replace")
    assert "Huey consumer started" in text
    assert "Consumer exiting" in text  # the worker child was stopped with the server


def test_a_killed_server_takes_its_worker_along(tmp_path: Path) -> None:
    import re

    url = f"sqlite:///{tmp_path}/serve.db"
    env = dict(os.environ, OMNILOOP_DATA_DIR=str(tmp_path), OMNILOOP_DATABASE_URL=url)
    env.pop("OMNILOOP_REDIS_URL", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "omniloop.cli", "serve", "--port",
                                   str(_free_port()), "--with-worker"],
                                  env=env, stdout=output, stderr=subprocess.STDOUT)
    worker_pid = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker_pid is None:
            found = re.search(r"Huey consumer started with \d+ thread, PID (\d+)",
                              log.read_text(errors="replace"))
            worker_pid = int(found.group(1)) if found else None
            time.sleep(0.2)
        assert worker_pid is not None, log.read_text(errors="replace")[-2000:]
    finally:
        server.kill()  # SIGKILL: no finally block runs in the server
        server.wait(timeout=10)
    deadline = time.monotonic() + 30
    alive = True
    while alive and time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            alive = False
    if alive:
        os.kill(worker_pid, signal.SIGKILL)
    assert not alive, "the worker outlived its server"
