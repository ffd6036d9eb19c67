"""Admin pages for imports: the upload form, a job's live progress, its error report."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from omniloop.api.deps import SessionDep
from omniloop.core.db import get_database
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.imports import jobs
from omniloop.imports.common import IDENTITY_FIELDS
from omniloop.imports.customers import CUSTOMER_FIELDS
from omniloop.imports.errors import ImportFileError
from omniloop.imports.models import FINISHED, ImportJob, ImportStatus
from omniloop.imports.orders import ORDER_FIELDS, REQUIRED_FIELDS
from omniloop.imports.report import KINDS, ImportKind, errors_csv_bytes
from omniloop.tenancy import audit
from omniloop.tenancy.access import Permission
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import refused
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

# Importing merges profiles in bulk: shown to those who may merge (owners, marketers).
register(NavItem("imports", N_("Imports"), "/admin/imports", Permission.customers_merge, 6))
audit.register_action("import.customers", N_("Customers imported"))
audit.register_action("import.orders", N_("Orders imported"))

KIND_LABELS: dict[str, str] = {"customers": N_("Customers"), "orders": N_("Orders")}
STATUS_LABELS: dict[str, str] = {
    ImportStatus.queued: N_("Waiting to start"),
    ImportStatus.running: N_("Running"),
    ImportStatus.done: N_("Imported"),
    ImportStatus.rejected: N_("Not imported"),
    ImportStatus.failed: N_("Failed"),
}
STATUS_BADGES: dict[str, str] = {ImportStatus.done: "ok", ImportStatus.rejected: "danger",
                                 ImportStatus.failed: "danger"}
WAITING = N_("Waiting to start…")
READING = N_("Reading the file…")
WAITING_TURN = N_("Checked. Waiting for another import to finish…")
PHASE_TEXT: dict[str, str] = {
    "checking": N_("Checking rows: {done} of {total}"),
    "importing": N_("Importing: {done} of {total} rows"),
}
COUNT_LABELS: dict[str, str] = {
    "rows": N_("Rows read"),
    "orders": N_("Orders in the file"),
    "created_customers": N_("New customers"),
    "updated_customers": N_("Existing customers updated"),
    "merged_customers": N_("Profiles merged"),
    "created_orders": N_("Orders added"),
    "unchanged_orders": N_("Already imported before"),
    "skipped": N_("Rows skipped"),
    "errors": N_("Errors"),
}
FIELD_LABELS: dict[str, str] = {
    "name": N_("Full name"), "phone": N_("Phone"), "email": N_("E-mail"), "line": N_("LINE"),
    "pos_card": N_("Member card"), "ecommerce": N_("Online shop member id"),
    "birthday": N_("Birthday"), "gender": N_("Gender"), "tags": N_("Tags"),
    "home_store": N_("Home store"), "order_id": N_("Order number"), "store": N_("Store"),
    "channel": N_("Sales channel"), "paid_at": N_("Date and time"), "date": N_("Date"),
    "time": N_("Time"), "customer_name": N_("Customer's name"), "sku": N_("SKU"),
    "product": N_("Product name"), "category": N_("Category"), "qty": N_("Quantity"),
    "unit_price": N_("Unit price"), "discount": N_("Discount"),
}
CHOOSE_FILE = N_("Choose a CSV file to import.")
CHOOSE_KIND = N_("Choose what the file holds: customers or orders.")

FormText = Annotated[str, Form()]
FormCheck = Annotated[str | None, Form()]
FormFile = Annotated[UploadFile | None, File()]


def _guide() -> dict[str, list[dict[str, Any]]]:
    identity = {spec.name for spec in IDENTITY_FIELDS}
    return {
        "customers": [{"label": FIELD_LABELS[spec.name], "aliases": spec.aliases[:5],
                       "required": False, "identity": spec.name in identity}
                      for spec in CUSTOMER_FIELDS],
        "orders": [{"label": FIELD_LABELS[spec.name], "aliases": spec.aliases[:5],
                    "required": spec.name in REQUIRED_FIELDS, "identity": spec.name in identity}
                   for spec in ORDER_FIELDS],
    }


def _form_page(admin: AdminContext, session: SessionDep, *, kind: str = "customers",
               skip_bad_rows: bool = False, errors: dict[str, str] | None = None,
               status_code: int = status.HTTP_200_OK) -> Response:
    return render(admin.request, "admin/imports.html", admin.template_values(
        "imports", jobs=jobs.list_jobs(session, admin.actor), kind=kind,
        skip_bad_rows=skip_bad_rows, errors=errors or {}, kinds=KIND_LABELS,
        statuses=STATUS_LABELS, badges=STATUS_BADGES, guide=_guide(),
        can_import_orders=_can(admin, "orders")), status_code=status_code)


def _can(admin: AdminContext, kind: ImportKind) -> bool:
    try:
        jobs.require_kind(admin.actor, kind)
    except OmniloopError:
        return False
    return True


@router.get("/imports")
def import_list(admin: Admin, session: SessionDep) -> Response:
    jobs.require_kind(admin.actor, "customers")
    return _form_page(admin, session)


@router.post("/imports", dependencies=[CsrfChecked])
def upload(admin: Admin, session: SessionDep, background: BackgroundTasks,
           kind: FormText = "", file: FormFile = None,
           skip_bad_rows: FormCheck = None) -> Response:
    jobs.require_kind(admin.actor, "customers")
    skip = skip_bad_rows is not None
    errors: dict[str, str] = {}
    if kind not in KINDS:
        errors["kind"] = gettext(CHOOSE_KIND)
    if file is None or not file.filename:
        errors["file"] = gettext(CHOOSE_FILE)
    if errors or file is None or kind not in KINDS:
        return _form_page(admin, session, kind=kind, skip_bad_rows=skip, errors=errors,
                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    chosen: ImportKind = "orders" if kind == "orders" else "customers"
    job = jobs.create_job(session, admin.actor, chosen, file.filename or "", skip)
    try:
        jobs.save_upload(job, file.file)
    except ImportFileError as exc:
        message = refused(session, exc)
        return _form_page(admin, session, kind=kind, skip_bad_rows=skip,
                          errors={"file": message}, status_code=exc.status)
    # Runs after the response, so after the request's transaction committed the job row.
    background.add_task(jobs.start_job, get_database(), admin.actor, job.id)
    return RedirectResponse(f"/admin/imports/{job.id}", status_code=303)


def _percent(job: ImportJob, progress: jobs.LiveProgress) -> int:
    """Checking is the first half of the bar, importing the second."""
    if job.status in FINISHED:
        return 100
    if progress.total <= 0:
        return 0
    share = min(progress.processed, progress.total) / progress.total
    if progress.phase == "waiting":
        return 50
    offset = 0.5 if progress.phase == "importing" else 0.0
    return int((offset + share / 2) * 100)


def _progress_text(job: ImportJob, progress: jobs.LiveProgress) -> str:
    if job.status is ImportStatus.queued:
        return gettext(WAITING)
    if progress.phase == "waiting":
        return gettext(WAITING_TURN)
    if progress.total <= 0 or progress.phase not in PHASE_TEXT:
        return gettext(READING)
    return gettext(PHASE_TEXT[progress.phase]).format(done=f"{progress.processed:,}",
                                                      total=f"{progress.total:,}")


def _counts(job: ImportJob) -> list[tuple[str, str, int]]:
    """(key, label msgid, value) of each count the job has, in a fixed order."""
    counts = job.counts or {}
    suffix = "_customers" if job.kind == "customers" else "_orders"
    shown: list[tuple[str, str, int]] = []
    for key in ("rows", "orders", "created", "updated", "merged", "unchanged", "skipped",
                "errors"):
        if not isinstance(counts.get(key), int):
            continue
        label = COUNT_LABELS.get(key) or COUNT_LABELS.get(key + suffix)
        if label is not None:
            shown.append((key, label, int(counts[key])))
    return shown


@router.get("/imports/{job_id}")
def job_page(job_id: str, admin: Admin, session: SessionDep) -> Response:
    job = jobs.get_job(session, admin.actor, job_id)
    progress = jobs.live_progress(job)
    errors = jobs.row_errors(job)
    total_errors = int((job.counts or {}).get("errors", len(errors)) or 0)
    return render(admin.request, "admin/imports_job.html", admin.template_values(
        "imports", job=job, finished=job.status in FINISHED, stalled=jobs.is_stalled(job),
        percent=_percent(job, progress), progress_text=_progress_text(job, progress),
        counts=_counts(job), errors=errors, total_errors=total_errors,
        problem=jobs.problem(job), kinds=KIND_LABELS, statuses=STATUS_LABELS,
        badges=STATUS_BADGES, ignored=(job.counts or {}).get("ignored_columns") or []))


@router.get("/imports/{job_id}/status")
def job_status(job_id: str, admin: Admin, session: SessionDep) -> JSONResponse:
    job = jobs.get_job(session, admin.actor, job_id)
    progress = jobs.live_progress(job)
    return JSONResponse({
        "id": job.id, "status": job.status.value, "phase": progress.phase,
        "processed": progress.processed, "total": progress.total,
        "percent": _percent(job, progress), "finished": job.status in FINISHED,
        "stalled": jobs.is_stalled(job), "text": _progress_text(job, progress),
        "counts": {k: v for k, v in (job.counts or {}).items() if isinstance(v, int)},
    }, headers={"Cache-Control": "no-store"})


@router.get("/imports/{job_id}/errors.csv")
def job_errors_csv(job_id: str, admin: Admin, session: SessionDep) -> Response:
    job = jobs.get_job(session, admin.actor, job_id)
    stem = job.file_name.rsplit(".", 1)[0] or "import"
    return Response(errors_csv_bytes(jobs.row_errors(job)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": _attachment(f"{stem}-errors.csv"),
                             "Cache-Control": "no-store"})


def _attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "ignore").decode() or "errors.csv"
    ascii_name = ascii_name.replace('"', "").replace("\\", "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
