"""The admin page of a campaign's codes: batches with live progress, the generate form with
its capacity check, CSV import with a per-row error report, and the export.

Thin HTML over `campaigns.batches` and `campaigns.code_files`. Owners and marketers generate
and import (`campaigns.manage`); store managers see the page and may export
(`campaigns.read`). A running batch's bar follows `…/codes/status` (JSON, polled once a
second by the page's script, a meta refresh without JavaScript), as the import pages do;
the batch row itself holds the progress, committed chunk by chunk.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, UploadFile, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import func, select

from omniloop.api.deps import SessionDep
from omniloop.campaigns import batches, code_files
from omniloop.campaigns.codes import ALPHABET, parse_pattern, require_room
from omniloop.campaigns.models import (
    BatchStatus,
    Campaign,
    CampaignStatus,
    CodeBatch,
    CodeMode,
    Coupon,
    CouponStatus,
)
from omniloop.campaigns.rules import current_status
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import utcnow
from omniloop.core.db import Session, get_database
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.tenancy.access import Permission
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, refused, register_flash
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

register_flash("codes_generated", N_("The codes were generated."))
register_flash("codes_generating", N_("The codes are being generated: the bar below shows "
                                      "how far. You can leave this page meanwhile."))
register_flash("codes_imported", N_("The codes in the file were imported."))

BATCH_STATUS_LABELS: dict[str, str] = {
    BatchStatus.queued: N_("Waiting to start"),
    BatchStatus.running: N_("Generating"),
    BatchStatus.done: N_("Done"),
    BatchStatus.failed: N_("Stopped"),
    "stalled": N_("Interrupted"),
}
BATCH_BADGES: dict[str, str] = {BatchStatus.done: "ok", BatchStatus.failed: "danger",
                                "stalled": "danger"}
SOURCE_LABELS: dict[str, str] = {batches.GENERATED: N_("Generated"),
                                 batches.IMPORTED: N_("Imported")}
COUPON_STATUS_LABELS: dict[CouponStatus, str] = {
    CouponStatus.available: N_("Not yet given out"),
    CouponStatus.claimed: N_("Claimed"),
    CouponStatus.redeemed: N_("Redeemed"),
    CouponStatus.cancelled: N_("Cancelled"),
}
PROGRESS_TEXT = N_("{created} of {requested} codes")
CAPACITY = N_("{pattern} holds {capacity} codes: up to {room} can be made from it.")
CAPACITY_USED = N_("{pattern} holds {capacity} codes and {existing} were made from it "
                   "already: up to {room} more can be made.")
COUNT_NOT_A_NUMBER = N_("Enter how many codes to make, as a whole number.")
CHOOSE_FILE = N_("Choose a CSV file of codes to import.")

FormText = Annotated[str, Form()]
FormFile = Annotated[UploadFile | None, File()]


def _key(batch: CodeBatch) -> str:
    """The batch's status as the page shows it: a stalled one has its own label."""
    return "stalled" if batches.is_stalled(batch) else batch.status.value


def _parse_count(text: str) -> int | None:
    cleaned = text.replace(",", "").replace("，", "").replace(" ", "").strip()
    return int(cleaned) if cleaned.isdigit() else None


def capacity_check(session: Session, tenant_id: str, pattern_text: str,
                   count: int | None) -> tuple[bool, str]:
    """Whether the pattern can take `count` more codes, and the sentence that says so."""
    try:
        pattern = parse_pattern(pattern_text)
        existing = batches.codes_from_pattern(session, tenant_id, pattern.text)
        if count is not None:
            require_room(pattern, count, existing)
    except OmniloopError as exc:
        return False, exc.localized()
    values = {"pattern": pattern.text, "capacity": f"{pattern.capacity:,}",
              "room": f"{pattern.room(existing):,}", "existing": f"{existing:,}"}
    return True, gettext(CAPACITY_USED if existing else CAPACITY).format(**values)


def _counts(session: Session, campaign: Campaign) -> dict[CouponStatus, int]:
    rows = session.execute(select(Coupon.status, func.count()).where(
        Coupon.tenant_id == campaign.tenant_id, Coupon.campaign_id == campaign.id,
        Coupon.code.is_not(None)).group_by(Coupon.status))
    found = {status_: int(n) for status_, n in rows}
    return {s: found.get(s, 0) for s in COUPON_STATUS_LABELS}


def _batch_state(batch: CodeBatch) -> dict[str, Any]:
    key = _key(batch)
    return {"id": batch.id, "status": key, "label": gettext(BATCH_STATUS_LABELS[key]),
            "percent": batches.percent(batch), "created": batch.created_count,
            "requested": batch.requested,
            "finished": batch.status in batches.FINISHED or key == "stalled",
            "text": gettext(PROGRESS_TEXT).format(created=f"{batch.created_count:,}",
                                                  requested=f"{batch.requested:,}")}


def _page(admin: AdminContext, session: Session, campaign: Campaign, *,
          pattern: str | None = None, count: str = "", errors: dict[str, str] | None = None,
          row_errors: list[code_files.CodeRowError] | None = None, total_row_errors: int = 0,
          flash: str | None = None, flash_kind: str = "ok", check: bool = False,
          status_code: int = status.HTTP_200_OK) -> Response:
    shared = campaign.code_mode != CodeMode.unique
    ended = current_status(campaign, utcnow()) == CampaignStatus.ended
    can_add = admin.actor.can(Permission.campaigns_manage) and not shared and not ended
    found = [] if shared else batches.list_batches(session, admin.actor, campaign.id)
    pattern_text = pattern if pattern is not None else (
        next((b.pattern for b in found if b.pattern), None) or campaign.code_pattern)
    capacity: tuple[bool, str] | None = None
    if can_add:
        capacity = capacity_check(session, admin.tenant.id, pattern_text,
                                  _parse_count(count) if check else None)
    return render(admin.request, "admin/campaign_codes.html", admin.template_values(
        "campaigns", campaign=campaign, shared=shared, ended=ended, can_add=can_add,
        batches=found, states={b.id: _batch_state(b) for b in found},
        running=any(not _batch_state(b)["finished"] for b in found),
        counts={} if shared else _counts(session, campaign),
        coupon_status_labels=COUPON_STATUS_LABELS, source_labels=SOURCE_LABELS,
        status_labels=BATCH_STATUS_LABELS, badges=BATCH_BADGES,
        failure=batches.failure_message, pattern=pattern_text, count=count,
        capacity=capacity, alphabet=ALPHABET, inline_limit=batches.INLINE_LIMIT,
        errors=errors or {}, row_errors=row_errors or [], total_row_errors=total_row_errors,
        min_length=code_files.MIN_CODE_LENGTH, max_rows=code_files.MAX_IMPORT_ROWS,
        flash=flash, flash_kind=flash_kind), status_code=status_code)


@router.get("/campaigns/{campaign_id}/codes")
def codes_page(campaign_id: str, admin: Admin, session: SessionDep,
               done: str | None = None,
               pattern: Annotated[str | None, Query(max_length=64)] = None,
               count: Annotated[str, Query(max_length=20)] = "") -> Response:
    """`?pattern=…&count=…` (the form's "Check" button) shows the capacity check for them."""
    admin.actor.require(Permission.campaigns_read)
    campaign = get_campaign(session, admin.actor, campaign_id)
    return _page(admin, session, campaign, pattern=pattern, count=count,
                 check=pattern is not None, flash=flash_message(done))


@router.get("/campaigns/{campaign_id}/codes/capacity")
def capacity(campaign_id: str, admin: Admin, session: SessionDep,
             pattern: Annotated[str, Query(max_length=64)] = "",
             count: Annotated[str, Query(max_length=20)] = "") -> JSONResponse:
    """The generate form's live check, as the operator types."""
    admin.actor.require(Permission.campaigns_read)
    get_campaign(session, admin.actor, campaign_id)
    ok, text = capacity_check(session, admin.tenant.id, pattern, _parse_count(count))
    return JSONResponse({"ok": ok, "text": text}, headers={"Cache-Control": "no-store"})


@router.get("/campaigns/{campaign_id}/codes/status")
def batches_status(campaign_id: str, admin: Admin, session: SessionDep) -> JSONResponse:
    found = batches.list_batches(session, admin.actor, campaign_id)
    states = [_batch_state(b) for b in found]
    return JSONResponse({"batches": states, "running": any(not s["finished"] for s in states)},
                        headers={"Cache-Control": "no-store"})


@router.post("/campaigns/{campaign_id}/codes/generate", dependencies=[CsrfChecked])
def generate(campaign_id: str, admin: Admin, session: SessionDep, background: BackgroundTasks,
             pattern: FormText = "", count: FormText = "") -> Response:
    admin.actor.require(Permission.campaigns_manage)
    number = _parse_count(count)
    if number is None:
        campaign = get_campaign(session, admin.actor, campaign_id)
        return _page(admin, session, campaign, pattern=pattern, count=count,
                     errors={"count": gettext(COUNT_NOT_A_NUMBER)},
                     status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        batch = batches.create_batch(session, admin.actor, campaign_id, pattern, number)
    except OmniloopError as exc:
        if exc.status == status.HTTP_404_NOT_FOUND or exc.status == status.HTTP_403_FORBIDDEN:
            raise
        message = refused(session, exc)
        campaign = get_campaign(session, admin.actor, campaign_id)
        field = exc.field if exc.field in ("pattern", "count") else None
        return _page(admin, session, campaign, pattern=pattern, count=count,
                     errors={field: message} if field else {},
                     flash=None if field else message, flash_kind="error",
                     status_code=exc.status)
    if batches.runs_inline(batch):
        batches.generate_inline(session, batch)
        return redirect_done(f"/admin/campaigns/{campaign_id}/codes", "codes_generated")
    background.add_task(batches.start_batch, get_database(), admin.actor.tenant_id, batch.id)
    return redirect_done(f"/admin/campaigns/{campaign_id}/codes", "codes_generating")


@router.post("/campaigns/{campaign_id}/codes/import", dependencies=[CsrfChecked])
def import_file(campaign_id: str, admin: Admin, session: SessionDep,
                file: FormFile = None) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    if file is None or not file.filename:
        campaign = get_campaign(session, admin.actor, campaign_id)
        return _page(admin, session, campaign, errors={"file": gettext(CHOOSE_FILE)},
                     status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    data = file.file.read(code_files.MAX_IMPORT_BYTES + 1)
    try:
        code_files.import_codes(session, admin.actor, campaign_id, data, file.filename)
    except code_files.CodeFileRejected as exc:
        refused(session, exc)
        campaign = get_campaign(session, admin.actor, campaign_id)
        return _page(admin, session, campaign,
                     row_errors=exc.errors[:code_files.MAX_REPORTED_ERRORS],
                     total_row_errors=len(exc.errors), flash=exc.localized(),
                     flash_kind="error", status_code=exc.status)
    except OmniloopError as exc:  # the file as a whole (not text, too large, empty), …
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            raise
        message = refused(session, exc)
        campaign = get_campaign(session, admin.actor, campaign_id)
        return _page(admin, session, campaign, errors={"file": message},
                     status_code=exc.status)
    return redirect_done(f"/admin/campaigns/{campaign_id}/codes", "codes_imported")


@router.get("/campaigns/{campaign_id}/codes.csv")
def export(campaign_id: str, admin: Admin, session: SessionDep) -> StreamingResponse:
    """The same file as the API's export, and audited the same way."""
    campaign = code_files.campaign_for_export(session, admin.actor, campaign_id)
    rows = code_files.count_codes(session, admin.tenant.id, campaign.id)
    database = get_database()
    code_files.record_export(database, admin.actor, campaign, rows)
    return StreamingResponse(
        code_files.export_csv(database, admin.tenant.id, campaign.id, admin.tenant.timezone),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="codes-{campaign.id}.csv"',
                 "Cache-Control": "no-store"})
