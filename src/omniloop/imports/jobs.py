"""Imports uploaded in the admin: saved to the data directory, run in a background thread.

The worker checks the file in a read transaction, then writes it in one write transaction
of its own (`get_database().unit_of_work()`), which commits only at the end. Its progress
goes to the `import_jobs` row in short separate transactions, so the job page can follow it.

SQLite has a single write lock, which the writing pass holds until it commits; while it
runs, progress is kept in this process only (`_live`) and the row catches up at the end.
The status page reads both, so the bar moves on SQLite too. The uploaded file is deleted
once the job has finished: it holds personal data, and the job row keeps what the page
shows.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Database, Session
from omniloop.core.settings import get_settings
from omniloop.imports import customers, orders
from omniloop.imports.common import require_import
from omniloop.imports.errors import FileTooLarge, ImportFileError, ImportJobNotFound
from omniloop.imports.models import FINISHED, ImportJob, ImportStatus
from omniloop.imports.report import ImportKind, ImportReport, RowError
from omniloop.orders import service as orders_service
from omniloop.tenancy.access import Actor

log = logging.getLogger("omniloop.imports")

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_STORED_ERRORS = 1000
# A queued or running job that no worker in this process runs and whose row has not moved
# for this long was interrupted (the server stopped); the page says so.
STALLED_AFTER = timedelta(minutes=15)
_PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the job row
_CHUNK = 1 << 16


@dataclass
class LiveProgress:
    phase: str
    processed: int
    total: int


_live: dict[str, LiveProgress] = {}
_live_lock = threading.Lock()
# One writing pass at a time in this process: on SQLite a second writer would wait for the
# first one's lock only as long as the busy timeout and then fail; on PostgreSQL two imports
# of overlapping people would wait on each other's rows anyway.
_write_turn = threading.RLock()


def require_kind(actor: Actor, kind: ImportKind) -> None:
    require_import(actor)
    if kind == "orders":
        orders_service.require_write(actor)


def upload_path(tenant_id: str, job_id: str) -> Path:
    return get_settings().data_dir / "imports" / tenant_id / f"{job_id}.csv"


def clean_file_name(name: str | None) -> str:
    """The base name of an uploaded file, without control characters, at most 255 long."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    return base[:255] or "upload.csv"


def create_job(session: Session, actor: Actor, kind: ImportKind, file_name: str,
               skip_bad_rows: bool) -> ImportJob:
    require_kind(actor, kind)
    job = ImportJob(tenant_id=actor.tenant_id, kind=kind, file_name=clean_file_name(file_name),
                    skip_bad_rows=skip_bad_rows, status=ImportStatus.queued, phase="",
                    processed=0, total=0, counts={}, errors=[],
                    created_by=actor.id if actor.kind == "staff" else None,
                    created_by_label=actor.label, updated_at=utcnow())
    session.add(job)
    session.flush()
    return job


def save_upload(job: ImportJob, stream: BinaryIO) -> Path:
    """Copy the upload beside the job, refusing files over MAX_UPLOAD_BYTES."""
    path = upload_path(job.tenant_id, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with path.open("wb") as target:
            path.chmod(0o600)
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise FileTooLarge(size=str(MAX_UPLOAD_BYTES // (1024 * 1024)))
                target.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def get_job(session: Session, actor: Actor, job_id: str) -> ImportJob:
    require_import(actor)
    job = session.get(ImportJob, (actor.tenant_id, job_id))
    if job is None:
        raise ImportJobNotFound()
    return job


def list_jobs(session: Session, actor: Actor, limit: int = 20) -> list[ImportJob]:
    require_import(actor)
    return list(session.scalars(select(ImportJob).where(ImportJob.tenant_id == actor.tenant_id)
                                .order_by(ImportJob.created_at.desc(), ImportJob.id.desc())
                                .limit(limit)))


def live_progress(job: ImportJob) -> LiveProgress:
    """The freshest progress: this process's worker if it runs the job, else the row."""
    with _live_lock:
        live = _live.get(job.id)
    if live is not None and job.status not in FINISHED:
        return live
    return LiveProgress(phase=job.phase, processed=job.processed, total=job.total)


def is_stalled(job: ImportJob) -> bool:
    if job.status in FINISHED:
        return False
    with _live_lock:
        if job.id in _live:
            return False
    return as_utc(job.updated_at) < utcnow() - STALLED_AFTER


def row_errors(job: ImportJob) -> list[RowError]:
    return [RowError.from_json(value) for value in job.errors or []]


def problem(job: ImportJob) -> RowError | None:
    """The reason a file was refused whole, as an error on no row."""
    found = (job.counts or {}).get("problem")
    if not isinstance(found, dict):
        return None
    return RowError(row=0, column="", reason=str(found.get("reason", "")),
                    params={str(k): str(v) for k, v in (found.get("params") or {}).items()})


# --- the worker -------------------------------------------------------------------------


class _Progress:
    """Reports a running job's progress to `_live` and, when possible, to its row."""

    def __init__(self, database: Database, tenant_id: str, job_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id
        self.job_id = job_id
        self.state = LiveProgress(phase="", processed=0, total=0)
        self.sqlite = database.engine.dialect.name == "sqlite"
        # This job's writing pass runs; on SQLite it holds the database's one write lock.
        self.writing = False
        self._last_write = 0.0
        with _live_lock:
            _live[job_id] = self.state

    def set_phase(self, phase: str) -> None:
        self.state.phase = phase
        self.state.processed = 0
        self._write(force=True)

    def update(self, done: int, total: int) -> None:
        self.state.processed = done
        self.state.total = total
        self._write(force=done >= total)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < _PROGRESS_INTERVAL:
            return
        if self.save(wait=False, status=ImportStatus.running, phase=self.state.phase,
                     processed=self.state.processed, total=self.state.total):
            self._last_write = now

    def save(self, *, wait: bool = True, **values: Any) -> bool:
        """Update the job row in a short transaction of its own; whether it was written.

        On SQLite never while a writing pass holds the single write lock (the row would wait
        for it, and this thread may be the one holding it): wait for the writing turn, or
        with `wait=False` leave the row as it is and let `_live` show the progress.
        """
        if not self.sqlite:
            self._update(values)
            return True
        if self.writing or not _write_turn.acquire(blocking=wait):
            return False
        try:
            self._update(values)
        finally:
            _write_turn.release()
        return True

    def _update(self, values: dict[str, Any]) -> None:
        with self.database.unit_of_work() as session:
            session.execute(update(ImportJob).where(
                ImportJob.tenant_id == self.tenant_id, ImportJob.id == self.job_id)
                .values(updated_at=utcnow(), **values))

    def close(self) -> None:
        with _live_lock:
            _live.pop(self.job_id, None)


Checker = Callable[..., Any]
_IMPORTERS: dict[str, tuple[Checker, Checker]] = {
    "customers": (customers.check_customers, customers.write_customers),
    "orders": (orders.check_orders, orders.write_orders),
}


def _outcome(report: ImportReport) -> dict[str, Any]:
    return {"status": ImportStatus.rejected if report.rejected else ImportStatus.done,
            "phase": "",
            "counts": {**report.summary(), "ignored_columns": report.ignored_columns,
                       "encoding": report.encoding},
            "errors": [error.as_json() for error in report.errors[:MAX_STORED_ERRORS]],
            "processed": report.rows, "total": report.rows, "finished_at": utcnow()}


def _write_pass(database: Database, progress: _Progress, write: Checker, actor: Actor,
                checked: Any, skip_bad_rows: bool, job_id: str) -> ImportReport:
    """The writing pass, one job at a time, in one transaction that commits at its end."""
    if not _write_turn.acquire(blocking=False):
        progress.set_phase("waiting")
        _write_turn.acquire()
    try:
        progress.set_phase("importing")
        progress.writing = True
        with database.unit_of_work() as session:
            report: ImportReport = write(session, actor, checked, skip_bad_rows=skip_bad_rows,
                                         on_progress=progress.update, job_id=job_id)
        return report
    finally:
        progress.writing = False
        _write_turn.release()


def run_job(database: Database, actor: Actor, job_id: str) -> None:
    """Run one queued job to its end; never raises (the outcome is on the job row)."""
    progress = _Progress(database, actor.tenant_id, job_id)
    path = upload_path(actor.tenant_id, job_id)
    try:
        progress.save(status=ImportStatus.running)
        with database.unit_of_work(write=False) as session:
            job = session.get_one(ImportJob, (actor.tenant_id, job_id))
            kind, file_name, skip_bad_rows = job.kind, job.file_name, job.skip_bad_rows
            check, write = _IMPORTERS[kind]
            checked = check(session, actor, path.read_bytes(), file_name,
                            on_progress=progress.update, on_phase=progress.set_phase)
        if checked.report.errors and not skip_bad_rows:
            # Refused whole: the writing pass only marks the report so, and writes nothing.
            with database.unit_of_work(write=False) as session:
                report: ImportReport = write(session, actor, checked, skip_bad_rows=False)
        else:
            report = _write_pass(database, progress, write, actor, checked, skip_bad_rows,
                                 job_id)
        progress.save(**_outcome(report))
    except ImportFileError as exc:
        progress.save(status=ImportStatus.rejected, phase="", finished_at=utcnow(), counts={
            "problem": {"code": exc.code, "reason": exc.msgid,
                        "params": {k: str(v) for k, v in exc.params.items()}}})
    except Exception:
        log.exception("import job %s failed", job_id)
        try:
            progress.save(status=ImportStatus.failed, phase="", finished_at=utcnow())
        except Exception:
            log.exception("import job %s: could not record the failure", job_id)
    finally:
        progress.close()
        path.unlink(missing_ok=True)


def start_job(database: Database, actor: Actor, job_id: str) -> threading.Thread:
    """Run the job in a background thread (call after the job row has been committed)."""
    thread = threading.Thread(target=run_job, args=(database, actor, job_id),
                              name=f"import-{job_id}", daemon=True)
    thread.start()
    return thread
