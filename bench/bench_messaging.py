"""A LINE campaign to 100,000 people: enqueued through the send service, drained through the
worker's dispatcher against the local LINE API stand-in. Targets: enqueued in ≤ 10 s,
drained at ≥ 2,000 recipients/s.

omniloop (a child process): a fresh SQLite database in a temporary directory (the pragmas
of `core.db`), one brand with its LINE channel, N customers each with a LINE identity and
LINE consent (seeded with bulk INSERTs, not timed), and a running campaign. Timed:

* **enqueue**: `sends.create_send` for the campaign to everyone who agreed to LINE, in one
  unit of work, as `POST /api/v1/message-sends` runs it: the audience query, the campaign's
  holdout draw recorded in `campaign_participants`, the LINE address look-up, the rendered
  card, N outbox rows, the commit.
* **drain**: `Dispatcher.drain()` as the worker runs it: claims (leases), consent and weekly
  cap checks in bulk, multicast batches of 500 fixed on the rows, the requests through
  line-bot-sdk (4 sending threads, the brand's rate limit), the outcomes recorded.

The LINE stand-in (tests/messaging/standins.py) runs in a child process of its own and
checks each request as LINE would (bearer token, message JSON, ≤ 500 recipients, retry
key); the run fails unless every targeted person got the card exactly once.

Internal modes: `_standin <json>`, `_product <json>`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from harness import Children, child_env, cpu_model, run_bench, run_child, seed_brand, version

ENQUEUE_TARGET_SECONDS = 10.0
DRAIN_TARGET_PER_SECOND = 2000.0
TOKEN = "bench-line-token"
ROOT = Path(__file__).resolve().parent.parent


def run_standin(_config: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.messaging.standins import LineStandIn

    standin = LineStandIn(token=TOKEN)
    with standin:
        print(standin.url, flush=True)
        while True:
            time.sleep(3600)


def run_product(config: dict[str, Any]) -> dict[str, Any]:
    from datetime import timedelta

    from sqlalchemy import func, insert, select

    from omniloop.campaigns import service
    from omniloop.campaigns.models import CampaignParticipant
    from omniloop.campaigns.schemas import CampaignCreate
    from omniloop.core.clock import utcnow
    from omniloop.core.ids import new_ids
    from omniloop.core.ratelimit import MemoryRateLimiter
    from omniloop.customers.models import (
        Channel,
        ConsentStatus,
        Customer,
        CustomerConsent,
        CustomerIdentity,
        IdentityKind,
    )
    from omniloop.messaging import channels, outbox, sends
    from omniloop.messaging.dispatch import DispatchConfig, Dispatcher
    from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus

    outbox.set_waker(None)  # the bench drives the dispatcher itself
    count = int(config["recipients"])
    brand = seed_brand(config["url"], actor_label="bench")
    database, tenant_id, actor = brand.database, brand.tenant_id, brand.actor
    now = utcnow()
    with database.unit_of_work() as session:
        channels.save_channel(session, actor, OutboxChannel.line, {},
                              {"channel_access_token": TOKEN, "channel_secret": "s"})
        channels.save_rules(session, actor, quiet_start="00:00", quiet_end="00:00",
                            weekly_cap=3)
        campaign = service.create_campaign(session, actor, CampaignCreate(
            name="週年慶", kind="amount_off", value_minor=5000, starts_at=now,
            ends_at=now + timedelta(days=30), holdout_share_bp=int(config["holdout_bp"])))
        service.launch_campaign(session, actor, campaign.id)
        campaign_id = campaign.id
    ids = new_ids(count)
    with database.unit_of_work() as session:
        for start in range(0, count, 5000):
            chunk = ids[start:start + 5000]
            session.execute(insert(Customer.__table__), [  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "id": c, "tags": [], "created_at": now,
                 "updated_at": now} for c in chunk])
            session.execute(insert(CustomerIdentity.__table__), [  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "id": c, "customer_id": c, "kind": IdentityKind.line,
                 "value": f"U{i:032x}", "source": "bench", "created_at": now}
                for i, c in enumerate(chunk, start)])
            session.execute(insert(CustomerConsent.__table__), [  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "customer_id": c, "channel": Channel.line,
                 "status": ConsentStatus.opted_in, "source": "bench", "changed_at": now}
                for c in chunk])

    # line-bot-sdk's generated models take about a second to import, once per process (a
    # server or worker pays it at its first LINE message); not part of a send.
    import linebot.v3.messaging  # noqa: F401

    cpu, begin = time.process_time(), time.perf_counter()
    with database.unit_of_work() as session:
        send = sends.create_send(session, actor, name="週年慶 LINE", channel=OutboxChannel.line,
                                 audience={"kind": "channel"}, campaign_id=campaign_id,
                                 content={"text": "週年慶優惠券，先搶先贏！",
                                          "title": "全品項 50 元折價券"})
        enqueued, holdout = send.enqueued_count, send.holdout_count
    enqueue_wall, enqueue_cpu = time.perf_counter() - begin, time.process_time() - cpu

    dispatcher = Dispatcher(database, DispatchConfig(line_base_url=config["line_url"]),
                            limiter=MemoryRateLimiter())
    cpu, begin = time.process_time(), time.perf_counter()
    report = dispatcher.drain()
    drain_wall, drain_cpu = time.perf_counter() - begin, time.process_time() - cpu
    dispatcher.close()
    with database.unit_of_work(write=False) as session:
        statuses = {str(s): int(n) for s, n in session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))}
        participants = session.scalar(select(func.count()).select_from(CampaignParticipant))
    database.dispose()
    return {"enqueue_seconds": enqueue_wall, "enqueue_cpu": enqueue_cpu,
            "drain_seconds": drain_wall, "drain_cpu": drain_cpu, "enqueued": enqueued,
            "holdout": holdout, "participants": participants, "requests": report.requests,
            "sent": report.sent, "statuses": statuses,
            "sent_status": statuses.get(OutboxStatus.sent.value, 0)}


def _start_standin(children: Children, tmp: Path) -> tuple[Any, str]:
    process = children.start([sys.executable, str(Path(__file__).resolve()), "_standin", "{}"],
                             child_env({}), tmp)
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("http://"):
        raise SystemExit(f"the LINE stand-in did not start: {line!r}")
    return process, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--holdout-percent", type=float, default=0.0,
                        help="the campaign's holdout share (default 0: all N are sent)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    def work(children: Children, tmp: Path) -> dict[str, Any]:
        import httpx

        standin, url = _start_standin(children, tmp)
        path = tmp / "bench.db"
        env = child_env({"OMNILOOP_DATA_DIR": str(tmp), "OMNILOOP_SECRET_KEY": "bench-key",
                         "OMNILOOP_DATABASE_URL": f"sqlite:///{path}"})
        result = run_child(children, __file__, "_product", {
            "url": f"sqlite:///{path}", "line_url": url, "recipients": args.recipients,
            "holdout_bp": int(args.holdout_percent * 100)}, env, tmp, timeout=900)
        result["standin"] = httpx.get(url + "/_stats", timeout=10).json()
        children.stop(standin)
        return result

    def report(result: dict[str, Any], _pin: bool,
               load: tuple[float, float] | None) -> str:
        stats = result["standin"]
        rate = result["sent"] / result["drain_seconds"] if result["drain_seconds"] else 0.0
        ok = (stats["deliveries"] == result["enqueued"] == result["sent_status"]
              and stats["max_per_recipient"] == 1 and stats["max_batch"] <= 500)
        lines = [
            f"LINE campaign to {args.recipients:,} people "
            f"(holdout {result['holdout']:,}, {result['participants']:,} participants recorded)",
            f"  enqueue: {result['enqueued']:,} messages in {result['enqueue_seconds']:.2f} s "
            f"(CPU {result['enqueue_cpu']:.2f} s)  target ≤ {ENQUEUE_TARGET_SECONDS:.0f} s: "
            f"{'met' if result['enqueue_seconds'] <= ENQUEUE_TARGET_SECONDS else 'MISSED'}",
            f"  drain:   {result['sent']:,} sent in {result['drain_seconds']:.2f} s = "
            f"{rate:,.0f} recipients/s in {result['requests']} requests "
            f"(CPU {result['drain_cpu']:.2f} s)  target ≥ {DRAIN_TARGET_PER_SECOND:,.0f}/s: "
            f"{'met' if rate >= DRAIN_TARGET_PER_SECOND else 'MISSED'}",
            f"  stand-in: {stats['requests']} requests, {stats['deliveries']:,} deliveries to "
            f"{stats['recipients']:,} people, at most {stats['max_per_recipient']} each, "
            f"largest multicast {stats['max_batch']}: {'OK' if ok else 'WRONG'}",
            f"  outbox: {result['statuses']}",
            f"  {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, line-bot-sdk {version('line-bot-sdk')}"
            + (f", load {load[0]:.2f} → {load[1]:.2f}" if load else "")]
        return "\n".join(lines)

    result = run_bench("omniloop-bench-messaging-", pin=False, work=work, report=report)
    if result is None:
        raise SystemExit(1)
    stats = result["standin"]
    if not (stats["deliveries"] == result["enqueued"] == result["sent_status"]
            and stats["max_per_recipient"] == 1):
        raise SystemExit(1)
    rate = result["sent"] / result["drain_seconds"] if result["drain_seconds"] else 0.0
    if args.strict and (result["enqueue_seconds"] > ENQUEUE_TARGET_SECONDS
                        or rate < DRAIN_TARGET_PER_SECOND):
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "_standin":
        run_standin(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "_product":
        print(json.dumps(run_product(json.loads(sys.argv[2]))))
    else:
        main()
