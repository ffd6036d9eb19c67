"""Importing customers: one row per person (or per identity of a person) as CRM and POS
member lists export them.

Every row is checked first (`check_customers`); a file with a bad row is refused whole
unless bad rows are to be skipped. Then each good row goes through `customers.identify`
(`write_customers`), in the caller's transaction: a row whose identities are known updates
that profile, rows of one person across the file land on one profile, and a row joining
two profiles merges them, exactly as identification from a POS or the API would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.customers.identify import identify
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.imports.common import (
    IDENTITY_FIELDS,
    RowErrors,
    StoreLookup,
    Ticker,
    identities_of,
    identity_columns_hint,
    phase,
    require_import,
)
from omniloop.imports.errors import NoIdentityColumn
from omniloop.imports.reader import Field, read_table
from omniloop.imports.report import ImportReport, PhaseCallback, ProgressCallback, RowError
from omniloop.imports.values import CellError, parse_date, parse_gender, split_tags
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor

SOURCE = "import"
MAX_NAME = 120
MAX_TAG = 40
MAX_TAGS = 50
EARLIEST_BIRTHDAY = date(1900, 1, 1)

BAD_BIRTHDAY = N_("The birthday {value} is in the future or before 1900.")
BAD_TAGS = N_("Tags are 1–40 characters each, at most 50 of them.")

CUSTOMER_FIELDS: tuple[Field, ...] = (
    Field("name", ("姓名", "名字", "會員姓名", "顧客姓名", "客戶姓名", "name", "full name",
                   "customer name"), "姓名/name"),
    *IDENTITY_FIELDS,
    Field("birthday", ("生日", "出生日期", "出生年月日", "birthday", "birth date", "birthdate",
                       "date of birth", "dob"), "生日/birthday"),
    Field("gender", ("性別", "gender", "sex", "稱謂"), "性別/gender"),
    Field("tags", ("標籤", "tags", "tag", "labels", "分類標籤"), "標籤/tags"),
    Field("home_store", ("門市", "常用門市", "所屬門市", "開卡門市", "註冊門市", "門市代碼",
                         "home_store", "home store", "store", "store code"), "門市/home_store"),
)


@dataclass(frozen=True)
class CustomerRow:
    number: int
    identities: list[IdentityIn]
    traits: Traits | None


@dataclass
class CheckedCustomers:
    """The outcome of the first pass: the report so far and the rows fit to import."""

    report: ImportReport
    rows: list[CustomerRow] = field(default_factory=list)


def _traits(errors: RowErrors, stores: StoreLookup | None) -> Traits | None:
    cells = errors.row.cells
    values: dict[str, Any] = {}
    name = errors.text("name", MAX_NAME)
    if name is not None:
        values["name"] = name
    if cells.get("birthday"):
        try:
            birthday = parse_date(cells["birthday"])
        except CellError as exc:
            errors.cell("birthday", exc)
        else:
            if birthday < EARLIEST_BIRTHDAY or birthday > date.today():
                errors.add("birthday", BAD_BIRTHDAY, value=birthday.isoformat())
            else:
                values["birthday"] = birthday
    if cells.get("gender"):
        try:
            values["gender"] = parse_gender(cells["gender"])
        except CellError as exc:
            errors.cell("gender", exc)
    if cells.get("tags"):
        tags = split_tags(cells["tags"])
        if len(tags) > MAX_TAGS or any(len(tag) > MAX_TAG for tag in tags):
            errors.add("tags", BAD_TAGS)
        elif tags:
            values["tags"] = tags
    if stores is not None:
        store = stores.find(errors, "home_store")
        if store is not None:
            values["home_store_id"] = store.id
    return Traits(**values) if values else None


def check_customers(session: Session, actor: Actor, data: bytes, file_name: str, *,
                    on_progress: ProgressCallback | None = None,
                    on_phase: PhaseCallback | None = None) -> CheckedCustomers:
    """Read and check every row; writes nothing. File-level problems raise
    `ImportFileError`; row problems are collected in the report."""
    require_import(actor)
    table = read_table(data, CUSTOMER_FIELDS)
    if not any(table.has(spec.name) for spec in IDENTITY_FIELDS):
        raise NoIdentityColumn(columns=identity_columns_hint())
    report = ImportReport(kind="customers", file_name=file_name, encoding=table.encoding,
                          delimiter=table.delimiter, rows=len(table.rows),
                          ignored_columns=table.ignored)
    checked = CheckedCustomers(report=report)
    stores = StoreLookup.load(session, actor) if table.has("home_store") else None
    phase(on_phase, "checking")
    ticker = Ticker(on_progress, len(table.rows))
    ticker.start()
    for row in table.rows:
        errors = RowErrors(table, row)
        identities = identities_of(errors, required=True)
        traits = _traits(errors, stores)
        if errors:
            report.errors.extend(errors.found)
        else:
            checked.rows.append(CustomerRow(number=row.number, identities=identities,
                                            traits=traits))
        ticker.advance()
    ticker.finish()
    return checked


def write_customers(session: Session, actor: Actor, checked: CheckedCustomers, *,
                    skip_bad_rows: bool = False, on_progress: ProgressCallback | None = None,
                    on_phase: PhaseCallback | None = None,
                    job_id: str | None = None) -> ImportReport:
    """Identify every good row, in the caller's transaction; or nothing at all when a row
    is bad and `skip_bad_rows` is false (the report then says `rejected`)."""
    require_import(actor)
    report = checked.report
    report.counts = {"created": 0, "updated": 0, "merged": 0, "skipped": 0}
    if report.errors and not skip_bad_rows:
        report.rejected = True
        return report
    phase(on_phase, "importing")
    ticker = Ticker(on_progress, report.rows)
    ticker.start()
    ticker.advance(report.bad_rows)
    created: set[str] = set()
    updated: set[str] = set()
    merged = 0
    failed: list[RowError] = []
    savepoint = session.begin_nested()
    try:
        for row in checked.rows:
            try:
                with session.begin_nested():
                    result = identify(session, actor, row.identities, row.traits,
                                      source=SOURCE)
            except OmniloopError as exc:
                failed.append(RowError.of(row.number, "", exc))
            else:
                if result.created:
                    created.add(result.customer.id)
                elif result.customer.id not in created:
                    updated.add(result.customer.id)
                merged += len(result.merged)
            ticker.advance()
    except BaseException:
        savepoint.rollback()
        raise
    report.errors = sorted([*report.errors, *failed], key=lambda e: e.row)
    if failed and not skip_bad_rows:
        savepoint.rollback()
        report.rejected = True
        return report
    savepoint.commit()
    report.counts = {"created": len(created), "updated": len(updated), "merged": merged,
                     "skipped": report.bad_rows}
    audit.record(session, actor, "import.customers", "import", job_id, report.audit_details())
    ticker.finish()
    return report


def import_customers(session: Session, actor: Actor, data: bytes, file_name: str, *,
                     skip_bad_rows: bool = False, on_progress: ProgressCallback | None = None,
                     on_phase: PhaseCallback | None = None,
                     job_id: str | None = None) -> ImportReport:
    """Check, then import, in the caller's transaction (which commits at its edge)."""
    checked = check_customers(session, actor, data, file_name, on_progress=on_progress,
                              on_phase=on_phase)
    return write_customers(session, actor, checked, skip_bad_rows=skip_bad_rows,
                           on_progress=on_progress, on_phase=on_phase, job_id=job_id)
