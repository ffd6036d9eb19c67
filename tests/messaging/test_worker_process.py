"""The real worker (`omniloop worker`, Huey) killed with SIGKILL mid-send, then restarted:
every message is delivered exactly once, counted on the LINE stand-in's side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from omniloop.core.db import Database, Session
from omniloop.messaging import line_messages
from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus, Purpose
from omniloop.messaging.outbox import Draft, enqueue_many
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.conftest import TEST_DATABASE_URL
from tests.messaging.standins import LineStandIn


def _start_worker(line: LineStandIn, data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMNILOOP_DATABASE_URL=TEST_DATABASE_URL,
               OMNILOOP_DATA_DIR=str(data_dir), OMNILOOP_LINE_API_BASE_URL=line.url,
               OMNILOOP_MESSAGING_LEASE_SECONDS="2", OMNILOOP_MESSAGING_RETRY_BASE_SECONDS="0.5")
    env.pop("OMNILOOP_REDIS_URL", None)
    return subprocess.Popen([sys.executable, "-c", "from omniloop.cli import app; app()",
                             "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(data_dir / "worker.log").open("ab"))


def _counts(session: Session, tenant: Tenant) -> dict[OutboxStatus, int]:
    session.rollback()
    return {OutboxStatus(s): n for s, n in session.execute(
        select(OutboxMessage.status, func.count()).where(OutboxMessage.tenant_id == tenant.id)
        .group_by(OutboxMessage.status))}


def test_sigkill_between_commit_and_send_then_restart_sends_each_once(
        database: Database, session: Session, tenant: Tenant, line: LineStandIn,
        tmp_path: Path) -> None:
    actor = system_actor(tenant.id)
    shared = {"messages": [line_messages.coupon_card(
        title="週年慶", description="全品項 9 折", claim_url="https://example.com/c/x")]}
    users = [f"U{i:032x}" for i in range(1100)]
    with database.unit_of_work() as work:
        # 1,100 recipients of one card (three multicasts) and 6 personal pushes.
        enqueue_many(work, actor, [Draft(OutboxChannel.line, Purpose.transactional, u,
                                         f"card:{u}", shared) for u in users])
        enqueue_many(work, actor, [Draft(
            OutboxChannel.line, Purpose.transactional, u, f"own:{u}",
            {"messages": [line_messages.text(f"嗨 {i}")]}) for i, u in enumerate(users[:6])])

    line.hold.set()  # requests reach LINE, are accepted, and hang before the answer
    worker = _start_worker(line, tmp_path)
    try:
        assert line.received.acquire(timeout=60), "the worker sent nothing"
        time.sleep(0.5)  # let the other send threads' requests arrive too
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        line.hold.clear()
        line.release.set()
        if worker.poll() is None:
            worker.kill()
    reached = len(line.requests)
    assert reached >= 1
    time.sleep(0.5)
    assert _counts(session, tenant).get(OutboxStatus.sent, 0) == 0  # killed before recording

    worker = _start_worker(line, tmp_path)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if _counts(session, tenant).get(OutboxStatus.sent, 0) == 1106:
                break
            time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert _counts(session, tenant) == {OutboxStatus.sent: 1106}
    # Each person got the card once and their own message once, though requests that LINE
    # had accepted were sent again after the restart (and answered 409 by the retry key).
    assert len(line.requests) > reached
    assert any(r["retry_key"] in [q["retry_key"] for q in line.requests[:reached]]
               for r in line.requests[reached:])
    for i, user in enumerate(users):
        assert line.deliveries[user] == (2 if i < 6 else 1), user
