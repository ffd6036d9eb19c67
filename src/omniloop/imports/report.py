"""What an import found and did: counts, and one error per bad cell (row, column, reason)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from omniloop.core.errors import OmniloopError
from omniloop.core.i18n import gettext

ImportKind = Literal["customers", "orders"]
KINDS: tuple[ImportKind, ...] = ("customers", "orders")

# on_progress(done, total): rows done so far in the current pass, of all rows of the file.
ProgressCallback = Callable[[int, int], None]
# on_phase(phase): a pass begins: "checking" (every row is read and checked) or "importing".
PhaseCallback = Callable[[str], None]
PROGRESS_EVERY = 200


@dataclass(frozen=True)
class RowError:
    """One problem in one cell.

    `row` counts lines as a spreadsheet shows them (the header is row 1); `column` is the
    header as written in the file ("" when the problem is not one cell's); `reason` is an
    English msgid whose placeholders `params` fills, translated when shown.
    """

    row: int
    column: str
    reason: str
    params: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The reason in English (the CLI's language)."""
        return self.reason.format(**self.params) if self.params else self.reason

    def localized(self) -> str:
        """The reason in the current request's language."""
        text = gettext(self.reason)
        return text.format(**self.params) if self.params else text

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason,
                "params": dict(self.params)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RowError:
        return cls(row=int(value["row"]), column=str(value["column"]),
                   reason=str(value["reason"]),
                   params={str(k): str(v) for k, v in (value.get("params") or {}).items()})

    @classmethod
    def of(cls, row: int, column: str, error: OmniloopError) -> RowError:
        """A domain error (e.g. an invalid identity) as the reason for one cell."""
        return cls(row=row, column=column, reason=error.msgid,
                   params={k: str(v) for k, v in error.params.items()})


@dataclass
class ImportReport:
    """The outcome of one import. `rejected`: nothing was written (see `errors`)."""

    kind: ImportKind
    file_name: str
    encoding: str = ""
    delimiter: str = ","
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    rejected: bool = False

    @property
    def bad_rows(self) -> int:
        return len({error.row for error in self.errors})

    def summary(self) -> dict[str, int]:
        """Every count, in a stable order: rows first, errors last."""
        return {"rows": self.rows, **self.counts, "errors": len(self.errors)}

    def audit_details(self) -> dict[str, Any]:
        """What the audit log keeps: the file's name and the counts, never its data."""
        return {"file_name": self.file_name, **self.summary(),
                "ignored_columns": list(self.ignored_columns)}


def _inert(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (column names come from the file)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def errors_csv(errors: Iterable[RowError], *, localized: bool = True) -> str:
    """The error report as CSV (row,column,reason), for a spreadsheet beside the file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row", "column", "reason"])
    for error in errors:
        writer.writerow([error.row, _inert(error.column),
                         _inert(error.localized() if localized else error.text())])
    return buffer.getvalue()


def errors_csv_bytes(errors: Iterable[RowError], *, localized: bool = True) -> bytes:
    """UTF-8 with a byte-order mark, which Excel needs to show Chinese text correctly."""
    return ("\ufeff" + errors_csv(errors, localized=localized)).encode("utf-8")
