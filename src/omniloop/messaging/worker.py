"""The message worker on Huey: SQLite storage by default, Redis when OMNILOOP_REDIS_URL is set.

Huey carries only wake-ups; the outbox table is the truth. A wake-up ("dispatch") is queued
after every commit that enqueued messages (outbox.set_waker), when the consumer starts, by
the dispatch itself for the next message due within a minute (a retry's backoff, the end of
quiet hours, a scheduled send), and by a periodic task every minute as the safety net. A
lost wake-up therefore delays messages by at most a minute and never drops one; a killed
worker leaves leased rows that the next dispatch takes over when their lease runs out.

The worker also runs the loyalty daily job hourly (`loyalty.jobs.run_daily_where_due`:
each brand at 03:00 in its own time zone), hourly too, the loop's referral expiry
(`loops.jobs.expire_everywhere`: pending referrals past their window become expired),
and the journey trigger scan (`journey_scan.scan_where_due`: each brand at 04:00 local).

A Huey lock keeps one dispatch loop per queue at a time; the consumer flushes stale locks
when it starts (a SIGKILLed worker cannot release its own).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.exceptions import TaskLockedException
from sqlalchemy import func, select

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import get_database
from omniloop.core.settings import get_settings
from omniloop.loops.jobs import expire_everywhere
from omniloop.loyalty.jobs import run_daily_where_due
from omniloop.messaging import journeys, outbox, sends
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.journey_scan import scan_where_due
from omniloop.messaging.models import JourneyRun, JourneyRunStatus, MessageSend, SendStatus

log = logging.getLogger("omniloop.messaging")

QUEUE_NAME = "omniloop-messaging"
_LOCK = "messaging.dispatch"
_huey: Huey | None = None
_dispatch_task: Any = None
_dispatcher: Dispatcher | None = None
_lock = threading.Lock()


def make_huey() -> Huey:
    settings = get_settings()
    if settings.redis_url:
        return RedisHuey(QUEUE_NAME, url=settings.redis_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(settings.data_dir / "huey.db"), results=False)


def get_huey() -> Huey:
    """The process's queue, with the messaging tasks registered on it."""
    global _huey, _dispatch_task
    with _lock:
        if _huey is None:
            huey = make_huey()
            _dispatch_task = huey.task(name="messaging.dispatch")(_dispatch)
            huey.periodic_task(crontab(minute="*"), name="messaging.poll")(_dispatch)
            # Hourly: each brand's daily loyalty job runs at 03:00 in its own time zone.
            huey.periodic_task(crontab(minute="15"), name="loyalty.daily")(_loyalty_daily)
            # Hourly: referrals whose window passed without a store purchase expire.
            huey.periodic_task(crontab(minute="20"), name="loops.expire_referrals")(
                _expire_referrals)
            # Hourly: each brand's time-based journey triggers are scanned at 04:00 local.
            huey.periodic_task(crontab(minute="25"), name="journeys.scan")(_journey_scan)
            huey.on_startup(name="messaging.startup")(_wake_on_start)
            _huey = huey
        return _huey


def reset() -> None:
    """Forget the queue and dispatcher (tests, or after the settings changed)."""
    global _huey, _dispatch_task, _dispatcher
    with _lock:
        if _dispatcher is not None:
            _dispatcher.close()
        _huey, _dispatch_task, _dispatcher = None, None, None


def wake() -> None:
    """Queue a dispatch now (the outbox calls this after a commit that enqueued)."""
    get_huey()
    _dispatch_task()


def install_waker() -> None:
    outbox.set_waker(wake)


def _get_dispatcher() -> Dispatcher:
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            _dispatcher = Dispatcher(get_database())
        return _dispatcher


def _wake_on_start() -> None:
    wake()


def _dispatch() -> None:
    huey = get_huey()
    dispatcher = _get_dispatcher()
    try:
        with huey.lock_task(_LOCK):
            _release_and_run_journeys()
            report = dispatcher.drain()
    except TaskLockedException:
        return  # another dispatch is running; it looks for the next due message itself
    if report.claimed:
        log.info("dispatched: %d sent, %d retried, %d dead, %d skipped, %d deferred "
                 "in %d requests", report.sent, report.retried, report.dead, report.skipped,
                 report.deferred, report.requests)
    due = min((t for t in (dispatcher.next_due(), _next_scheduled_send()) if t is not None),
              default=None)
    if due is not None:
        delay = (due - utcnow()).total_seconds()
        if delay < timedelta(minutes=1).total_seconds():
            _dispatch_task.schedule(delay=max(delay, 0.2))


def _loyalty_daily() -> None:
    run_daily_where_due()


def _expire_referrals() -> None:
    expire_everywhere()


def _journey_scan() -> None:
    if scan_where_due():
        wake()  # runs entered without a wait are due now


def _release_and_run_journeys() -> None:
    """Scheduled sends and due journey runs, each in its own transaction; a failure in one is
    logged and does not keep the outbox from draining."""
    for step in (sends.release_due, journeys.run_due):
        try:
            with get_database().unit_of_work() as session:
                step(session)
        except Exception:  # noqa: BLE001 - logged; the next dispatch tries again
            log.exception("messaging: %s failed", step.__name__)


def _next_scheduled_send() -> datetime | None:
    """When the next scheduled send or waiting journey run is due."""
    with get_database().unit_of_work(write=False) as session:
        times = [session.scalar(select(func.min(MessageSend.scheduled_at)).where(
            MessageSend.status == SendStatus.scheduled)),
            session.scalar(select(func.min(JourneyRun.due_at)).where(
                JourneyRun.status == JourneyRunStatus.waiting))]
    found = [as_utc(t) for t in times if t is not None]
    return min(found) if found else None


def run_consumer(workers: int = 2) -> None:
    """Run the Huey consumer in this process until SIGINT/SIGTERM (`omniloop worker`)."""
    huey = get_huey()
    install_waker()
    # flush_locks + extra_locks: the dispatch lock of a worker killed while holding it is
    # released when the next worker starts (Huey only knows locks it has seen).
    consumer = huey.create_consumer(workers=workers, periodic=True, flush_locks=True,
                                    extra_locks=_LOCK,
                                    scheduler_interval=1, initial_delay=0.05, max_delay=1.0,
                                    check_worker_health=True)
    consumer.run()
