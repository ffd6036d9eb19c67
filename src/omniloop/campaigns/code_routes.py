"""HTTP API of a campaign's unique codes: generated batches, CSV import and export.

Thin: parse, call `campaigns.batches` / `campaigns.code_files`, shape the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field, StringConstraints
from starlette.datastructures import UploadFile

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.campaigns import batches, code_files
from omniloop.campaigns.models import BatchStatus, CodeBatch
from omniloop.core.db import get_database
from omniloop.core.errors import N_, BadRequest
from omniloop.core.schemas import RequestModel, ResponseModel, UtcDatetime
from omniloop.tenancy.tenants import get_tenant

router = APIRouter(tags=["campaigns"])


class CodeBatchIn(RequestModel):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        examples=["CAFE-####-####"],
        description="Literal letters, digits, '-' and '_', and '#' for a random character "
                    "from 23456789ABCDEFGHJKMNPQRSTVWXYZ (no 0 O 1 I L U). It must hold "
                    "1,000 × the codes of this brand made from it, these included.")
    count: int = Field(ge=1, le=batches.MAX_BATCH, strict=True, examples=[100_000])


class CodeBatchOut(ResponseModel):
    id: str
    campaign_id: str
    source: str = Field(description="`generated` or `imported`.")
    pattern: str | None
    requested: int
    created_count: int = Field(description="Codes made so far; grows while it runs.")
    status: BatchStatus
    percent: int
    stalled: bool = Field(description="Queued or running but interrupted (the server "
                                      "stopped): it will not finish by itself.")
    error: str | None = Field(description="Why it did not make every code: `pattern_full`, "
                                          "`interrupted` or `unexpected`.")
    error_message: str | None
    created_by: str
    created_at: UtcDatetime
    finished_at: UtcDatetime | None

    @classmethod
    def of(cls, batch: CodeBatch) -> CodeBatchOut:
        return cls(id=batch.id, campaign_id=batch.campaign_id, source=batch.source,
                   pattern=batch.pattern, requested=batch.requested,
                   created_count=batch.created_count, status=batch.status,
                   percent=batches.percent(batch), stalled=batches.is_stalled(batch),
                   error=batches.failure_key(batch),
                   error_message=batches.failure_message(batch), created_by=batch.created_by,
                   created_at=batch.created_at, finished_at=batch.finished_at)


@router.post("/campaigns/{campaign_id}/code-batches", summary="Generate unique codes",
             response_model=CodeBatchOut, status_code=status.HTTP_202_ACCEPTED,
             responses={201: {"model": CodeBatchOut,
                              "description": "A small batch, made at once."}})
def create_code_batch(campaign_id: str, body: CodeBatchIn, actor: ApiActor,
                      session: SessionDep, background: BackgroundTasks,
                      response: Response) -> CodeBatchOut:
    """Up to 5,000 codes are made at once: `201` with the finished batch. More are made in
    the background: `202`, and `GET /code-batches/{id}` (the `Location`) follows the
    progress. Refusals: `422 code_pattern_too_small` (the pattern holds fewer than 1,000 ×
    the codes), `422 campaign_invalid` (a bad pattern or count, naming the `field`),
    `409 campaign_code_mode_shared`, `409 campaign_ended`."""
    batch = batches.create_batch(session, actor, campaign_id, body.pattern, body.count)
    if batches.runs_inline(batch):
        batches.generate_inline(session, batch)
        response.status_code = status.HTTP_201_CREATED
    else:
        # Runs after the response, so after the request's transaction committed the row.
        background.add_task(batches.start_batch, get_database(), actor.tenant_id, batch.id)
    response.headers["Location"] = f"/api/v1/code-batches/{batch.id}"
    return CodeBatchOut.of(batch)


@router.get("/code-batches/{batch_id}", summary="A code batch and its progress",
            response_model=CodeBatchOut)
def get_code_batch(batch_id: str, actor: ApiActor, session: SessionDep) -> CodeBatchOut:
    return CodeBatchOut.of(batches.get_batch(session, actor, batch_id))


@router.get("/campaigns/{campaign_id}/code-batches", summary="A campaign's code batches",
            response_model=list[CodeBatchOut])
def list_code_batches(campaign_id: str, actor: ApiActor,
                      session: SessionDep) -> list[CodeBatchOut]:
    """Generated and imported, newest first."""
    return [CodeBatchOut.of(b) for b in batches.list_batches(session, actor, campaign_id)]


class NoFile(BadRequest):
    code = "code_file_missing"
    message = N_("Send the CSV file as the body (Content-Type: text/csv) or as the form "
                 "field 'file' (multipart/form-data).")


async def code_file(request: Request) -> tuple[bytes, str]:
    """The uploaded file's bytes and name, read before the (synchronous) route runs."""
    limit = code_files.MAX_IMPORT_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise code_files.CodeFileTooLarge(rows=f"{code_files.MAX_IMPORT_ROWS:,}",
                                          size=str(limit // 2**20))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise NoFile()
        return await upload.read(limit + 1), upload.filename or ""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            break
    if not data:
        raise NoFile()
    return bytes(data), ""


_CSV_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"},
                 "example": "code\nSPRING-7KQ2M9\nSPRING-4HX8PD\n"},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/campaigns/{campaign_id}/codes/import", summary="Import codes from CSV",
             response_model=CodeBatchOut, status_code=status.HTTP_201_CREATED,
             openapi_extra=_CSV_BODY)
def import_codes(campaign_id: str, actor: ApiActor,
                 upload: Annotated[tuple[bytes, str], Depends(code_file)],
                 session: SessionDep) -> CodeBatchOut:
    """One code per line, header optional (`code`). All or nothing: any bad row (characters,
    length 6–40, a duplicate in the file, a code this brand already uses) imports nothing
    and answers `422 code_file_invalid` with every bad row in `details` as
    `{row, code, reason}`, rows numbered as a spreadsheet shows them."""
    # `upload` comes before `session`: the body is read before the write transaction (on
    # SQLite, the write lock) begins.
    data, name = upload
    return CodeBatchOut.of(code_files.import_codes(session, actor, campaign_id, data, name))


@router.get("/campaigns/{campaign_id}/codes.csv", summary="Export a campaign's codes (CSV)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}},
                             "description": "code, status, customer_id, claimed_at, "
                                            "redeemed_at"}})
def export_codes(campaign_id: str, actor: ApiActor, session: SessionDep) -> StreamingResponse:
    """Every code of the campaign, oldest first, with its status, holder and times in the
    brand's time zone. Written to the audit log: the file holds valid codes."""
    campaign = code_files.campaign_for_export(session, actor, campaign_id)
    timezone = get_tenant(session, actor.tenant_id).timezone
    rows = code_files.count_codes(session, actor.tenant_id, campaign.id)
    database = get_database()
    code_files.record_export(database, actor, campaign, rows)
    return StreamingResponse(
        code_files.export_csv(database, actor.tenant_id, campaign.id, timezone),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="codes-{campaign.id}.csv"',
                 "Cache-Control": "no-store"})
