"""Codes in CSV files: importing a list of codes made elsewhere, exporting a campaign's codes.

Import: one code per line, with or without a header (`code`, `代碼`, `優惠碼`, …; with a
header the file may have other columns, which are ignored). The file is read as the
customer imports read theirs (`imports.reader.decode`: UTF-8 with or without BOM, UTF-16,
Big5). Every row is checked before anything is written — the code's characters and length,
duplicates inside the file, codes this brand already uses (any campaign's coupons, or a
shared code) — and a file with any bad row imports nothing: the answer lists each bad row
with its number as a spreadsheet shows it and the reason, so it can be corrected and
uploaded again. A good file becomes one `code_batches` row (source `imported`).

Export: every code of a campaign with its status, holder and times, streamed from a read
transaction of its own, so a million codes never sit in memory at once. Exports hand out
valid codes: each one is written to the audit log with who made it.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from omniloop.campaigns.batches import IMPORTED, CodesNeedUniqueMode, campaign_for_codes
from omniloop.campaigns.codes import MAX_CODE_LENGTH, store_codes
from omniloop.campaigns.models import (
    BatchStatus,
    Campaign,
    CodeBatch,
    CodeMode,
    Coupon,
)
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Database, Session
from omniloop.core.errors import N_, Conflict, ValidationFailed
from omniloop.core.i18n import gettext
from omniloop.imports.reader import decode, normalize_header, sniff_delimiter
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

MIN_CODE_LENGTH = 6  # shorter codes are guessed too easily
MAX_IMPORT_ROWS = 200_000
MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_REPORTED_ERRORS = 1000
HEADER_NAMES = frozenset(normalize_header(name) for name in (
    "code", "codes", "coupon code", "coupon_code", "voucher code", "代碼", "優惠碼", "優惠代碼",
    "優惠券代碼", "折扣碼", "兌換碼", "序號"))
EXPORT_COLUMNS = ("code", "status", "customer_id", "claimed_at", "redeemed_at")
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]*$")
_LOOKUP_CHUNK = 900  # codes per "already used?" query (SQLite allows 32,766 parameters)
_EXPORT_ROWS = 5000  # rows fetched and written at a time

TOO_SHORT_OR_LONG = N_("A code has {min} to {max} characters; this one has {length}.")
BAD_CHARACTERS = N_("A code holds only letters, digits, '-' and '_', and starts with a "
                    "letter or digit.")
DUPLICATE = N_("The same code is on row {row}.")
ALREADY_USED = N_("This code is already used in this brand.")
SEVERAL_VALUES = N_("This row has more than one value: put one code per line, or name the "
                    "code column 'code'.")
NO_CODE = N_("This row has no code.")

audit.register_action("campaign.codes_import", N_("Imported coupon codes"))
audit.register_action("campaign.codes_export", N_("Exported coupon codes"))


@dataclass(frozen=True)
class CodeRowError:
    """One bad row: its number as a spreadsheet shows it (the first line is row 1), the
    code as written, and the reason (an English msgid that `params` fills)."""

    row: int
    code: str
    reason: str
    params: dict[str, str] = field(default_factory=dict)

    def localized(self) -> str:
        text = gettext(self.reason)
        return text.format(**self.params) if self.params else text

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "reason": self.localized()}


class CodeFileRejected(ValidationFailed):
    """The file has bad rows: nothing was imported. The answer lists them in `details`."""

    code = "code_file_invalid"
    message = N_("Nothing was imported. Rows with problems: {count}.")

    def __init__(self, errors: list[CodeRowError]) -> None:
        super().__init__(count=f"{len(errors):,}")
        self.errors = errors

    def render(self) -> dict[str, Any]:
        body = super().render()
        body["error"]["details"] = [e.as_json() for e in self.errors[:MAX_REPORTED_ERRORS]]
        return body


class CodeFileEmpty(ValidationFailed):
    code = "code_file_empty"
    message = N_("The file holds no codes.")


class CodeFileTooLarge(ValidationFailed):
    code = "code_file_too_large"
    message = N_("A file can hold at most {rows} codes and {size} MB: split it into smaller "
                 "files.")


class CodesTakenMeanwhile(Conflict):
    code = "codes_taken_meanwhile"
    message = N_("Some of these codes were taken by another change meanwhile; nothing was "
                 "imported. Upload the file again to see which.")


def _too_large() -> CodeFileTooLarge:
    return CodeFileTooLarge(rows=f"{MAX_IMPORT_ROWS:,}", size=str(MAX_IMPORT_BYTES // 2**20))


def normalize_code(text: str) -> str:
    """As people type codes: full-width forms (ＣＡＦＥ) folded, any case, spaces around."""
    return unicodedata.normalize("NFKC", text).strip().upper()


@dataclass
class ParsedFile:
    codes: list[str]  # in file order, normalised
    rows: list[int]  # each code's row number
    errors: list[CodeRowError]


def parse_code_file(data: bytes) -> ParsedFile:
    """Read and check the file's rows by themselves (the database is asked later)."""
    if len(data) > MAX_IMPORT_BYTES:
        raise _too_large()
    text, _encoding = decode(data)
    lines = text.splitlines(keepends=True)
    first = next((line for line in lines if line.strip()), "")
    delimiter = sniff_delimiter(first)
    reader = csv.reader(lines, delimiter=delimiter)
    column: int | None = None  # the code column, once a header named it
    header_seen = False
    parsed = ParsedFile(codes=[], rows=[], errors=[])
    first_row: dict[str, int] = {}
    for record in reader:
        number = reader.line_num
        cells = [cell.strip() for cell in record]
        if not any(cells):
            continue
        if not header_seen:
            header_seen = True
            named = [i for i, cell in enumerate(cells) if normalize_header(cell) in HEADER_NAMES]
            if named:
                column = named[0]
                continue
        if column is None and sum(1 for cell in cells if cell) > 1:
            parsed.errors.append(CodeRowError(number, ",".join(cells)[:60], SEVERAL_VALUES))
            continue
        raw = cells[column] if column is not None and column < len(cells) else (
            next((cell for cell in cells if cell), "") if column is None else "")
        code = normalize_code(raw)
        if len(parsed.codes) + len(parsed.errors) >= MAX_IMPORT_ROWS:
            raise _too_large()
        error = _check(number, code)
        if error is None and code in first_row:
            error = CodeRowError(number, code, DUPLICATE, {"row": str(first_row[code])})
        if error is not None:
            parsed.errors.append(error)
            continue
        first_row[code] = number
        parsed.codes.append(code)
        parsed.rows.append(number)
    return parsed


def _check(number: int, code: str) -> CodeRowError | None:
    if not code:
        return CodeRowError(number, code, NO_CODE)
    if not MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH:
        return CodeRowError(number, code[:60], TOO_SHORT_OR_LONG, {
            "min": str(MIN_CODE_LENGTH), "max": str(MAX_CODE_LENGTH), "length": str(len(code))})
    if not _CODE.match(code):
        return CodeRowError(number, code, BAD_CHARACTERS)
    return None


def used_codes(session: Session, tenant_id: str, codes: list[str]) -> set[str]:
    """Which of these codes the tenant already uses: on a coupon, or as a shared code."""
    used: set[str] = set()
    for start in range(0, len(codes), _LOOKUP_CHUNK):
        part = codes[start:start + _LOOKUP_CHUNK]
        used.update(c for c in session.scalars(select(Coupon.code).where(
            Coupon.tenant_id == tenant_id, Coupon.code.in_(part))) if c is not None)
        used.update(c for c in session.scalars(select(Campaign.shared_code).where(
            Campaign.tenant_id == tenant_id, Campaign.shared_code.in_(part))) if c is not None)
    return used


def import_codes(session: Session, actor: Actor, campaign_id: str, data: bytes,
                 file_name: str = "") -> CodeBatch:
    """All or nothing: every code of the file becomes an available coupon, or none does.

    Raises `CodeFileRejected` listing every bad row. Runs in the caller's transaction.
    """
    actor.require(Permission.campaigns_manage)
    # The file first: reading it touches no table, so a large one does not keep SQLite's
    # write lock (taken by the first statement of a write transaction) meanwhile.
    parsed = parse_code_file(data)
    if not parsed.codes and not parsed.errors:
        raise CodeFileEmpty()
    campaign = campaign_for_codes(session, actor, campaign_id, for_update=True)
    taken = used_codes(session, actor.tenant_id, parsed.codes)
    errors = parsed.errors + [CodeRowError(row, code, ALREADY_USED)
                              for code, row in zip(parsed.codes, parsed.rows, strict=True)
                              if code in taken]
    if errors:
        raise CodeFileRejected(sorted(errors, key=lambda e: e.row))
    batch = CodeBatch(tenant_id=actor.tenant_id, campaign_id=campaign.id, source=IMPORTED,
                      pattern=None, requested=len(parsed.codes), created_count=0,
                      status=BatchStatus.running, created_by=actor.label)
    session.add(batch)
    session.flush()
    stored = 0
    for start in range(0, len(parsed.codes), 50_000):
        stored += store_codes(session.connection(), tenant_id=actor.tenant_id,
                              campaign_id=campaign.id, batch_id=batch.id,
                              codes=parsed.codes[start:start + 50_000])
    if stored != len(parsed.codes):
        # Another transaction took some of these codes between the check and the insert
        # (PostgreSQL; SQLite writers run one at a time). Raising rolls all of it back.
        raise CodesTakenMeanwhile()
    batch.created_count = stored
    batch.status = BatchStatus.done
    batch.finished_at = utcnow()
    session.flush()
    audit.record(session, actor, "campaign.codes_import", "campaign", campaign.id,
                 {"batch_id": batch.id, "file_name": file_name[:255], "count": stored})
    return batch


# --- export ---------------------------------------------------------------------------


def campaign_for_export(session: Session, actor: Actor, campaign_id: str) -> Campaign:
    actor.require(Permission.campaigns_read)
    campaign = get_campaign(session, actor, campaign_id)
    if campaign.code_mode != CodeMode.unique:
        raise CodesNeedUniqueMode()
    return campaign


def count_codes(session: Session, tenant_id: str, campaign_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Coupon).where(
        Coupon.tenant_id == tenant_id, Coupon.campaign_id == campaign_id,
        Coupon.code.is_not(None))) or 0)


def record_export(database: Database, actor: Actor, campaign: Campaign, rows: int) -> None:
    """Write the audit entry of an export, in a short write transaction of its own.

    Exports are GET requests, whose unit of work only reads; the entry is committed before
    the first byte goes out, so no export leaves without its record.
    """
    with database.unit_of_work() as session:
        audit.record(session, actor, "campaign.codes_export", "campaign", campaign.id,
                     {"rows": rows})


def _when(value: datetime | None, timezone: str) -> str:
    return to_local(value, timezone).isoformat(timespec="seconds") if value else ""


def export_csv(database: Database, tenant_id: str, campaign_id: str,
               timezone: str) -> Iterator[bytes]:
    """The campaign's codes as CSV (oldest first), a few thousand rows per piece.

    Times are the brand's local time with their UTC offset (2026-11-25T14:03:00+08:00):
    readable in a spreadsheet and unambiguous for a program. Codes start with a letter or
    digit, so no cell can be taken for a spreadsheet formula.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue().encode()
    with database.unit_of_work(write=False) as session:
        result = session.execute(
            select(Coupon.code, Coupon.status, Coupon.customer_id, Coupon.claimed_at,
                   Coupon.redeemed_at)
            .where(Coupon.tenant_id == tenant_id, Coupon.campaign_id == campaign_id,
                   Coupon.code.is_not(None))
            .order_by(Coupon.id).execution_options(yield_per=_EXPORT_ROWS))
        for part in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows((code, status.value, customer or "", _when(claimed, timezone),
                              _when(redeemed, timezone))
                             for code, status, customer, claimed, redeemed in part)
            yield buffer.getvalue().encode()
