"""What customer and order imports share: identity columns, stores, access, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.errors import InvalidIdentity
from omniloop.customers.identities import normalize
from omniloop.customers.models import IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.imports.reader import Field, Row, Table
from omniloop.imports.report import PROGRESS_EVERY, ProgressCallback, RowError
from omniloop.imports.values import CellError
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import Store
from omniloop.tenancy.stores import list_stores

NO_IDENTITY = N_("No identity: give a phone, e-mail, LINE id, member card or online shop id.")
REQUIRED = N_("This cell is required.")
TOO_LONG = N_("Longer than {max} characters.")
UNKNOWN_STORE = N_("No store has the code or name '{value}'.")
AMBIGUOUS_STORE = N_("Several stores are named '{value}': use the store code.")
EXTRA_CELLS = N_("This row has more cells than the header names: a value probably contains "
                 "an unquoted '{delimiter}'.")

IDENTITY_FIELDS: tuple[Field, ...] = (
    Field("phone", ("手機", "手機號碼", "行動電話", "手機號", "mobile", "mobile phone", "cellphone",
                    "cell phone", "phone", "phone number", "電話", "聯絡電話", "電話號碼", "tel"),
          "手機/phone"),
    Field("email", ("email", "e-mail", "電子郵件", "電子信箱", "email address", "信箱", "mail"),
          "email"),
    Field("line", ("line_user_id", "LINE", "LINE ID", "LINE user id", "LINE UID"), "LINE"),
    Field("pos_card", ("會員卡號", "卡號", "card", "pos_card", "card number", "card no",
                       "member card", "會員編號", "member no"), "會員卡號/card"),
    Field("ecommerce", ("網路會員編號", "ecommerce_id", "ecommerce id", "網購會員編號",
                        "電商會員編號", "官網會員編號", "online member id"),
          "網路會員編號/ecommerce_id"),
)
IDENTITY_KINDS: dict[str, IdentityKind] = {
    "phone": IdentityKind.phone, "email": IdentityKind.email, "line": IdentityKind.line,
    "pos_card": IdentityKind.pos_card, "ecommerce": IdentityKind.ecommerce,
}


def require_import(actor: Actor) -> None:
    """Importing writes and merges profiles in bulk: it needs `customers.write` and
    `customers.merge` (owners, marketers, `admin` keys, the CLI) — not cashiers."""
    actor.require(Permission.customers_write)
    actor.require(Permission.customers_merge)


class RowErrors:
    """Errors found in one row; `add` keeps the first per column."""

    def __init__(self, table: Table, row: Row) -> None:
        self.table = table
        self.row = row
        self.found: list[RowError] = []
        if row.extra:
            self.found.append(RowError(row.number, "", EXTRA_CELLS,
                                       {"delimiter": _delimiter_name(table.delimiter)}))

    def add(self, name: str, reason: str, **params: str) -> None:
        column = self.table.column(name) if name else ""
        if any(error.column == column and column for error in self.found):
            return
        self.found.append(RowError(self.row.number, column, reason, params))

    def cell(self, name: str, error: CellError) -> None:
        self.add(name, error.reason, **error.params)

    def text(self, name: str, limit: int, *, required: bool = False) -> str | None:
        """The cell's text if it fits `limit` characters; None when empty or invalid."""
        value = self.row.cells.get(name, "")
        if not value:
            if required:
                self.add(name, REQUIRED)
            return None
        if len(value) > limit:
            self.add(name, TOO_LONG, max=str(limit))
            return None
        return value

    def __bool__(self) -> bool:
        return bool(self.found)


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "TAB"}.get(delimiter, delimiter)


def identities_of(errors: RowErrors, *, required: bool) -> list[IdentityIn]:
    """The row's identities, normalised (0912-345-678 → +886912345678)."""
    found: list[IdentityIn] = []
    for spec in IDENTITY_FIELDS:
        value = errors.row.cells.get(spec.name, "")
        if not value:
            continue
        kind = IDENTITY_KINDS[spec.name]
        try:
            found.append(IdentityIn(kind=kind, value=normalize(kind, value)))
        except InvalidIdentity as exc:
            errors.add(spec.name, exc.msgid, **{k: str(v) for k, v in exc.params.items()})
    if required and not found and not errors:
        columns = [errors.table.column(spec.name) for spec in IDENTITY_FIELDS
                   if errors.table.has(spec.name)]
        errors.found.append(RowError(errors.row.number, "/".join(columns), NO_IDENTITY))
    return found


def identity_columns_hint() -> str:
    return ", ".join(spec.shown() for spec in IDENTITY_FIELDS)


@dataclass
class StoreLookup:
    """Stores by code (any case) or by exact name, read once per import."""

    by_code: dict[str, Store]
    by_name: dict[str, list[Store]]

    @classmethod
    def load(cls, session: Session, actor: Actor) -> StoreLookup:
        stores = list_stores(session, actor)
        by_name: dict[str, list[Store]] = {}
        for store in stores:
            by_name.setdefault(store.name.strip(), []).append(store)
        return cls(by_code={store.code.upper(): store for store in stores}, by_name=by_name)

    def find(self, errors: RowErrors, name: str) -> Store | None:
        value = errors.row.cells.get(name, "")
        if not value:
            return None
        store = self.by_code.get(value.upper())
        if store is not None:
            return store
        named = self.by_name.get(value, [])
        if len(named) == 1:
            return named[0]
        errors.add(name, AMBIGUOUS_STORE if named else UNKNOWN_STORE, value=value)
        return None


class Ticker:
    """Calls `on_progress(done, total)` every PROGRESS_EVERY rows and at the end."""

    def __init__(self, on_progress: ProgressCallback | None, total: int) -> None:
        self.on_progress = on_progress
        self.total = total
        self.done = 0
        self._last = 0

    def advance(self, rows: int = 1) -> None:
        self.done += rows
        if self.on_progress is not None and self.done - self._last >= PROGRESS_EVERY:
            self._last = self.done
            self.on_progress(self.done, self.total)

    def finish(self) -> None:
        if self.on_progress is not None:
            self._last = self.done = self.total
            self.on_progress(self.total, self.total)

    def start(self) -> None:
        if self.on_progress is not None:
            self.on_progress(0, self.total)


def phase(on_phase: Callable[[str], None] | None, name: str) -> None:
    if on_phase is not None:
        on_phase(name)
