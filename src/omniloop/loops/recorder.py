"""Recording scans and clicks without making the person wait for the database.

`/t/<code>` and `/r/<code>` answer from memory (see `lookup.py`) and hand what happened to
this recorder, which writes it a moment later in batches: one short write transaction per
batch for all scans and clicks of the last ~200 ms, instead of one per request. On SQLite,
whose single writer is the bottleneck, that is the difference between a redirect that queues
behind every other scan and one that never touches the write lock (docs/benchmarks.md).

What a batch writes: the `qr_scan` / `link_click` / `review_clicked` events (multi-row
INSERT; each has a fresh client event id, so a batch never collides with itself), with the
customer resolved from the anonymous device id where that device already belongs to a
profile, the short links' click counters (one UPDATE per link) and the touchpoints' scan
counters (one UPDATE per touchpoint; a scanned touchpoint is retired, never deleted).

The price, written down in docs/loops.md: a scan is in the database up to ~200 ms after the
redirect, and a process killed hard (SIGKILL, power loss) loses the scans of its last batch.
A clean shutdown flushes (atexit, and the app's lifespan via `flush`). Scans are counts for a
report, not money: that trade is right for them, and is not made for anything else.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import Table, bindparam, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import datetime_to_db, get_database, insert_many
from omniloop.core.ids import new_ids
from omniloop.customers.ingest import EVENT_COLUMNS, identity_owners
from omniloop.customers.models import Event, IdentityKind
from omniloop.loops.models import ShortLink, Touchpoint

log = logging.getLogger("omniloop.loops.recorder")

FLUSH_SECONDS = 0.2
MAX_BATCH = 1000
MAX_PENDING = 100_000  # beyond this (database down for minutes) new hits are dropped

_EVENTS = cast(Table, Event.__table__)
_LINKS = cast(Table, ShortLink.__table__)
_TOUCHPOINTS = cast(Table, Touchpoint.__table__)
_COUNT_LINK = (update(_LINKS)
               .where(_LINKS.c.tenant_id == bindparam("b_tenant_id"),
                      _LINKS.c.id == bindparam("b_id"))
               .values(clicks=_LINKS.c.clicks + bindparam("b_clicks"),
                       bot_clicks=_LINKS.c.bot_clicks + bindparam("b_bots")))
_COUNT_SCANS = (update(_TOUCHPOINTS)
                .where(_TOUCHPOINTS.c.tenant_id == bindparam("b_tenant_id"),
                       _TOUCHPOINTS.c.id == bindparam("b_id"))
                .values(scans=_TOUCHPOINTS.c.scans + bindparam("b_scans")))


@dataclass(frozen=True)
class Hit:
    """One scan or click as the request saw it."""

    tenant_id: str
    type: str  # qr_scan | link_click | review_clicked
    source: str  # touchpoint | short_link
    store_id: str | None
    device_id: str | None
    properties: dict[str, Any]
    occurred_at: datetime = field(default_factory=utcnow)
    link_id: str | None = None  # short links: the counter to add to
    bot: bool = False  # counted as a bot click, recorded as no event
    customer_id: str | None = None  # when the page already knows who it is


class Recorder:
    """A buffer of hits and the thread that writes them."""

    def __init__(self) -> None:
        self._pending: list[Hit] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one batch at a time: flush() and the thread
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def add(self, hit: Hit) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending.append(hit)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="loops-recorder",
                                                daemon=True)
                self._thread.start()
            if len(self._pending) >= MAX_BATCH:
                self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _take(self) -> list[Hit]:
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            return batch

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must survive a bad moment of the database
                log.exception("writing scans and clicks failed; they will be retried")
                time.sleep(1.0)

    def flush(self) -> int:
        """Write everything pending now; returns how many hits this call wrote (the thread
        may have written some a moment before). Tests call it to see the scans of the
        requests they made."""
        written = 0
        with self._write_lock:
            while True:
                batch = self._take()
                if not batch:
                    return written
                try:
                    write_hits(batch)
                except IntegrityError:
                    # One hit the database refuses (its brand or store deleted meanwhile)
                    # must not block the others forever: write them one by one.
                    written += self._one_by_one(batch)
                    continue
                except Exception:
                    with self._lock:  # put them back, in order, for the next try
                        self._pending[:0] = batch
                    raise
                written += len(batch)


    def _one_by_one(self, batch: list[Hit]) -> int:
        written = 0
        for hit in batch:
            try:
                write_hits([hit])
                written += 1
            except IntegrityError:
                self.dropped += 1
                log.warning("dropped a %s the database refused (brand %s)", hit.type,
                            hit.tenant_id)
        return written


def write_hits(batch: list[Hit]) -> None:
    """One write transaction for a batch of hits.

    The events go in as plain tuples through one DBAPI executemany (`core.db.insert_many`,
    as batch ingestion writes them): built by SQLAlchemy row by row they cost ~30 µs of
    Python per scan, held under the GIL while the requests of the same process waited —
    the longest scan answers under load came from there (docs/benchmarks.md).
    """
    database = get_database()
    with database.unit_of_work() as session:
        connection = session.connection()
        devices: dict[str, set[str]] = {}
        for hit in batch:
            if hit.device_id and hit.customer_id is None and not hit.bot:
                devices.setdefault(hit.tenant_id, set()).add(hit.device_id)
        owners: dict[tuple[str, str], str] = {}
        for tenant_id, values in devices.items():
            for value, customer_id in identity_owners(session, tenant_id,
                                                      IdentityKind.device.value,
                                                      sorted(values)).items():
                owners[(tenant_id, value)] = customer_id
        to_db = datetime_to_db(connection.dialect)
        received_at = to_db(utcnow())
        events = [hit for hit in batch if not hit.bot]
        ids = new_ids(2 * len(events))  # each event's id and its client event id's suffix
        insert_many(session, _EVENTS, EVENT_COLUMNS, [
            (hit.tenant_id, ids[2 * n], f"{hit.type}:{ids[2 * n + 1]}",
             hit.customer_id or (owners.get((hit.tenant_id, hit.device_id))
                                 if hit.device_id else None),
             hit.type, "offline" if hit.type == "qr_scan" else "online", hit.source,
             hit.store_id, None,
             to_json({**hit.properties, "device_id": hit.device_id} if hit.device_id
                     else hit.properties).decode(),
             to_db(hit.occurred_at), received_at)
            for n, hit in enumerate(events)])
        counts: Counter[tuple[str, str, bool]] = Counter(
            (hit.tenant_id, hit.link_id, hit.bot) for hit in batch if hit.link_id)
        links = {(tenant, link) for tenant, link, _ in counts}
        for tenant_id, link_id in sorted(links):
            connection.execute(_COUNT_LINK, {
                "b_tenant_id": tenant_id, "b_id": link_id,
                "b_clicks": counts[(tenant_id, link_id, False)],
                "b_bots": counts[(tenant_id, link_id, True)]})
        scans: Counter[tuple[str, str]] = Counter(
            (hit.tenant_id, str(hit.properties["touchpoint_id"])) for hit in batch
            if hit.type == "qr_scan" and not hit.bot and hit.properties.get("touchpoint_id"))
        for (tenant_id, touchpoint_id), count in sorted(scans.items()):
            connection.execute(_COUNT_SCANS, {"b_tenant_id": tenant_id, "b_id": touchpoint_id,
                                              "b_scans": count})


recorder = Recorder()


@atexit.register
def _flush_at_exit() -> None:
    try:
        recorder.flush()
    except Exception:
        log.exception("scans and clicks of the last moment could not be written")
