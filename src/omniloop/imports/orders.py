"""Importing orders: one row per order LINE, as POS and online shops export sales.

Rows with the same order id are one order, its lines in the order of the rows (the rows
need not be next to each other). Order-level cells (store, channel, time, the buyer's
phone, card, e-mail, name) may be filled on every row of an order or on its first row only;
a later row that fills one differently is an error. A row without any identity is an
anonymous (walk-in) purchase.

Every row is checked first (`check_orders`); then each order goes through
`orders.service.ingest_order` (`write_orders`), which is idempotent by the order id:
importing the same file again finds every order already recorded and changes nothing.
An order with a bad row is left out whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.imports.common import (
    IDENTITY_FIELDS,
    IDENTITY_KINDS,
    REQUIRED,
    RowErrors,
    StoreLookup,
    Ticker,
    identities_of,
    phase,
    require_import,
)
from omniloop.imports.errors import MissingColumns
from omniloop.imports.reader import Field, Row, Table, read_table
from omniloop.imports.report import ImportReport, PhaseCallback, ProgressCallback, RowError
from omniloop.imports.values import (
    CellError,
    parse_amount,
    parse_channel,
    parse_datetime,
    parse_quantity,
    parse_time_of_day,
)
from omniloop.orders import service as orders_service
from omniloop.orders.schemas import MAX_LINES, MAX_QUANTITY, MAX_UNIT_PRICE_MINOR, OrderIn
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor
from omniloop.tenancy.tenants import get_tenant

SOURCE = "import"
MAX_ORDER_ID = 64
MAX_SKU = 64
MAX_PRODUCT = 160
MAX_CATEGORY = 80
MAX_NAME = 120

DIFFERS = N_("Differs from row {row} of the same order.")
DISCOUNT_TOO_LARGE = N_("The discount is larger than quantity × unit price.")
TOO_EXPENSIVE = N_("The unit price is above the largest one accepted.")
TOO_MANY = N_("The quantity is above {max}.")
TOO_MANY_LINES = N_("An order has at most {max} lines.")
NEEDS_STORE = N_("An in-store order needs a store.")
NO_STORE_ONLINE = N_("An online order has no store: leave the store empty.")
IN_FUTURE = N_("The time {value} is in the future.")
NEEDS_TIME = N_("Give the order's date and time.")
INVALID_ORDER = N_("This order is not valid: {detail}")

ORDER_FIELDS: tuple[Field, ...] = (
    Field("order_id", ("訂單編號", "訂單號碼", "訂單號", "單號", "交易序號", "交易編號",
                       "order_id", "order id", "external_id", "external id", "order no",
                       "order number", "transaction id"), "訂單編號/order_id"),
    Field("store", ("門市", "門市代碼", "門市代號", "店號", "店別", "store", "store code",
                    "store_code"), "門市/store"),
    Field("channel", ("通路", "銷售通路", "channel"), "通路/channel"),
    Field("paid_at", ("交易時間", "付款時間", "結帳時間", "消費時間", "訂單時間", "日期時間",
                      "paid_at", "paid at", "datetime", "timestamp", "order time"),
          "日期/時間/paid_at"),
    Field("date", ("日期", "交易日期", "訂單日期", "消費日期", "date", "order date"), "日期/date"),
    Field("time", ("時間", "time"), "時間/time"),
    Field("customer_name", ("姓名", "會員姓名", "顧客姓名", "customer name", "customer"),
          "姓名/customer name"),
    *IDENTITY_FIELDS,
    Field("sku", ("品號", "商品編號", "商品代號", "商品代碼", "料號", "貨號", "sku", "item code",
                  "product code", "product id"), "品號/sku"),
    Field("product", ("品名", "商品名稱", "品項", "商品", "name", "item", "item name",
                      "product name", "product"), "品名/name"),
    Field("category", ("類別", "分類", "商品類別", "category"), "類別/category"),
    Field("qty", ("數量", "qty", "quantity"), "數量/qty"),
    Field("unit_price", ("單價", "售價", "unit price", "unit_price", "price"), "單價/unit_price"),
    Field("discount", ("折扣", "折扣金額", "折讓", "discount"), "折扣/discount"),
)
REQUIRED_FIELDS = ("order_id", "sku", "qty", "unit_price")
_FIELD_BY_NAME = {spec.name: spec for spec in ORDER_FIELDS}
# Order-level values and the column each comes from, for "differs from row N" errors.
_ORDER_LEVEL = ("store", "channel", "paid_at", "customer_name", *(s.name for s in IDENTITY_FIELDS))


@dataclass
class _Line:
    row: int
    values: dict[str, Any]


@dataclass
class _Order:
    external_id: str
    first: Row
    rows: list[int] = field(default_factory=list)
    lines: list[_Line] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # order-level field → value
    value_rows: dict[str, int] = field(default_factory=dict)  # field → row it came from
    bad: bool = False


@dataclass(frozen=True)
class OrderRow:
    """An order fit to import, with the rows it came from."""

    rows: list[int]
    data: OrderIn


@dataclass
class CheckedOrders:
    report: ImportReport
    orders: list[OrderRow] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)


def _paid_at(errors: RowErrors, timezone: ZoneInfo) -> datetime | None:
    cells = errors.row.cells
    moment: datetime | None = None
    try:
        if cells.get("paid_at"):
            moment = parse_datetime(cells["paid_at"])
        elif cells.get("date"):
            try:
                moment = parse_datetime(cells["date"])
            except CellError as exc:
                errors.cell("date", exc)
                return None
            if cells.get("time"):
                moment = datetime.combine(moment.date(), parse_time_of_day(cells["time"]),
                                          moment.tzinfo)
        elif cells.get("time"):
            moment = parse_datetime(cells["time"])
    except CellError as exc:
        errors.cell("paid_at" if cells.get("paid_at") else "time", exc)
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone)
    return moment


def _line(errors: RowErrors, currency: str) -> dict[str, Any]:
    cells = errors.row.cells
    line: dict[str, Any] = {"sku": errors.text("sku", MAX_SKU, required=True)}
    product = errors.text("product", MAX_PRODUCT)
    if product is not None:
        line["name"] = product
    category = errors.text("category", MAX_CATEGORY)
    if category is not None:
        line["category"] = category
    quantity = price = None
    if not cells.get("qty"):
        errors.add("qty", REQUIRED)
    else:
        try:
            quantity = parse_quantity(cells["qty"])
        except CellError as exc:
            errors.cell("qty", exc)
        else:
            if quantity > MAX_QUANTITY:
                errors.add("qty", TOO_MANY, max=str(MAX_QUANTITY))
    if not cells.get("unit_price"):
        errors.add("unit_price", REQUIRED)
    else:
        try:
            price = parse_amount(cells["unit_price"], currency)
        except CellError as exc:
            errors.cell("unit_price", exc)
        else:
            if price > MAX_UNIT_PRICE_MINOR:
                errors.add("unit_price", TOO_EXPENSIVE)
    discount = 0
    if cells.get("discount"):
        try:
            discount = parse_amount(cells["discount"], currency)
        except CellError as exc:
            errors.cell("discount", exc)
    if quantity is not None and price is not None and discount > quantity * price:
        errors.add("discount", DISCOUNT_TOO_LARGE)
    line.update(quantity=quantity, unit_price_minor=price, discount_minor=discount)
    return line


def _order_values(errors: RowErrors, stores: StoreLookup | None, timezone: ZoneInfo
                  ) -> dict[str, Any]:
    """The order-level values this row fills in (an empty cell fills nothing)."""
    values: dict[str, Any] = {}
    cells = errors.row.cells
    if stores is not None:
        store = stores.find(errors, "store")
        if store is not None:
            values["store"] = store.id
    if cells.get("channel"):
        try:
            values["channel"] = parse_channel(cells["channel"])
        except CellError as exc:
            errors.cell("channel", exc)
    paid_at = _paid_at(errors, timezone)
    if paid_at is not None:
        values["paid_at"] = paid_at
    name = errors.text("customer_name", MAX_NAME)
    if name is not None:
        values["customer_name"] = name
    for identity in identities_of(errors, required=False):
        values[identity.kind.value] = identity.value  # the field names are the kinds
    return values


def _time_column(table: Table) -> str:
    for name in ("paid_at", "date", "time"):
        if table.has(name):
            return name
    return "paid_at"


def _merge_into(order: _Order, row: Row, values: dict[str, Any], errors: RowErrors) -> None:
    for name, value in values.items():
        if name not in order.values:
            order.values[name] = value
            order.value_rows[name] = row.number
        elif order.values[name] != value:
            column = name if name != "paid_at" else _time_column(errors.table)
            errors.add(column, DIFFERS, row=str(order.value_rows[name]))


def _order_in(order: _Order, errors: RowErrors, table: Table) -> OrderIn | None:
    """The order as the orders service takes it; errors go on the order's first row."""
    values = order.values
    store_id = values.get("store")
    channel = values.get("channel") or ("store" if store_id else "online")
    if channel == "store" and store_id is None:
        errors.add("store" if table.has("store") else "channel", NEEDS_STORE)
    if channel == "online" and store_id is not None:
        errors.add("channel", NO_STORE_ONLINE)
    paid_at = values.get("paid_at")
    if paid_at is None:
        errors.add(_time_column(table), NEEDS_TIME)
    elif paid_at > utcnow() + orders_service.CLOCK_SKEW:
        errors.add(_time_column(table), IN_FUTURE,
                   value=paid_at.strftime("%Y-%m-%d %H:%M"))
    if errors:
        return None
    identities = [IdentityIn(kind=IDENTITY_KINDS[spec.name], value=values[spec.name])
                  for spec in IDENTITY_FIELDS if spec.name in values]
    body: dict[str, Any] = {
        "external_id": order.external_id, "source": SOURCE, "channel": channel,
        "store_id": store_id, "identities": identities,
        "lines": [line.values for line in order.lines], "paid_at": paid_at,
    }
    if identities and "customer_name" in values:
        body["traits"] = Traits(name=values["customer_name"])
    try:
        return OrderIn.model_validate(body)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                           for e in exc.errors())
        errors.add("", INVALID_ORDER, detail=detail)
        return None


def check_orders(session: Session, actor: Actor, data: bytes, file_name: str, *,
                 on_progress: ProgressCallback | None = None,
                 on_phase: PhaseCallback | None = None) -> CheckedOrders:
    """Read and check every row and group the rows into orders; writes nothing."""
    require_import(actor)
    orders_service.require_write(actor)
    table = read_table(data, ORDER_FIELDS)
    missing = [_FIELD_BY_NAME[name].shown() for name in REQUIRED_FIELDS if not table.has(name)]
    if not any(table.has(name) for name in ("paid_at", "date", "time")):
        missing.append(_FIELD_BY_NAME["paid_at"].shown())
    if missing:
        raise MissingColumns(columns=", ".join(missing))
    tenant = get_tenant(session, actor.tenant_id)
    timezone = ZoneInfo(tenant.timezone)
    stores = StoreLookup.load(session, actor) if table.has("store") else None
    report = ImportReport(kind="orders", file_name=file_name, encoding=table.encoding,
                          delimiter=table.delimiter, rows=len(table.rows),
                          ignored_columns=table.ignored)
    phase(on_phase, "checking")
    ticker = Ticker(on_progress, len(table.rows))
    ticker.start()
    orders: dict[str, _Order] = {}
    for row in table.rows:
        errors = RowErrors(table, row)
        external_id = errors.text("order_id", MAX_ORDER_ID, required=True)
        line = _line(errors, tenant.currency)
        values = _order_values(errors, stores, timezone)
        if external_id is None:
            report.errors.extend(errors.found)
            ticker.advance()
            continue
        order = orders.setdefault(external_id, _Order(external_id=external_id, first=row))
        order.rows.append(row.number)
        if len(order.lines) >= MAX_LINES:
            errors.add("order_id", TOO_MANY_LINES, max=str(MAX_LINES))
        if not errors:
            _merge_into(order, row, values, errors)
        if errors:
            order.bad = True
            report.errors.extend(errors.found)
        else:
            order.lines.append(_Line(row=row.number, values=line))
        ticker.advance()
    checked = CheckedOrders(report=report, columns=dict(table.columns))
    for order in orders.values():
        if order.bad:
            continue
        errors = RowErrors(table, Row(number=order.first.number, cells=order.first.cells))
        data_in = _order_in(order, errors, table)
        if data_in is None:
            order.bad = True
            report.errors.extend(errors.found)
            continue
        checked.orders.append(OrderRow(rows=order.rows, data=data_in))
    report.errors.sort(key=lambda e: e.row)
    report.counts = {"orders": len(orders)}
    ticker.finish()
    return checked


_SERVICE_FIELDS = {"external_id": "order_id", "paid_at": "paid_at", "store_id": "store",
                   "store_code": "store", "channel": "channel", "quantity": "qty",
                   "unit_price_minor": "unit_price", "discount_minor": "discount",
                   "sku": "sku", "name": "product", "category": "category"}


def _located(order: OrderRow, columns: dict[str, str], exc: OmniloopError) -> RowError:
    """A refusal of the orders service, put on the row and column it is about."""
    row, name = order.rows[0], ""
    parts = (exc.field or "").split(".")
    if parts[0] == "lines" and len(parts) >= 2 and parts[1].isdigit():
        index = int(parts[1])
        if index < len(order.rows):
            row = order.rows[index]
        name = _SERVICE_FIELDS.get(parts[-1], "")
    elif parts[0] == "paid_at":
        name = next((n for n in ("paid_at", "date", "time") if n in columns), "")
    else:
        name = _SERVICE_FIELDS.get(parts[0], "")
    return RowError.of(row, columns.get(name, ""), exc)


def write_orders(session: Session, actor: Actor, checked: CheckedOrders, *,
                 skip_bad_rows: bool = False, on_progress: ProgressCallback | None = None,
                 on_phase: PhaseCallback | None = None,
                 job_id: str | None = None) -> ImportReport:
    """Record every good order, in the caller's transaction; or nothing at all when a row
    is bad and `skip_bad_rows` is false (the report then says `rejected`)."""
    require_import(actor)
    orders_service.require_write(actor)
    report = checked.report
    total_orders = report.counts.get("orders", len(checked.orders))
    report.counts = {"orders": total_orders, "created": 0, "unchanged": 0, "skipped": 0}
    if report.errors and not skip_bad_rows:
        report.rejected = True
        return report
    phase(on_phase, "importing")
    ticker = Ticker(on_progress, report.rows)
    ticker.start()
    good_rows = sum(len(order.rows) for order in checked.orders)
    ticker.advance(report.rows - good_rows)
    created = unchanged = 0
    skipped_rows = report.rows - good_rows
    failed: list[RowError] = []
    savepoint = session.begin_nested()
    try:
        for order in checked.orders:
            try:
                with session.begin_nested():
                    _, is_new = orders_service.ingest_order(session, actor, order.data)
            except OmniloopError as exc:
                failed.append(_located(order, checked.columns, exc))
                skipped_rows += len(order.rows)
            else:
                if is_new:
                    created += 1
                else:
                    unchanged += 1
            ticker.advance(len(order.rows))
    except BaseException:
        savepoint.rollback()
        raise
    report.errors = sorted([*report.errors, *failed], key=lambda e: e.row)
    if failed and not skip_bad_rows:
        savepoint.rollback()
        report.rejected = True
        return report
    savepoint.commit()
    report.counts = {"orders": total_orders, "created": created, "unchanged": unchanged,
                     "skipped": skipped_rows}
    audit.record(session, actor, "import.orders", "import", job_id, report.audit_details())
    ticker.finish()
    return report


def import_orders(session: Session, actor: Actor, data: bytes, file_name: str, *,
                  skip_bad_rows: bool = False, on_progress: ProgressCallback | None = None,
                  on_phase: PhaseCallback | None = None,
                  job_id: str | None = None) -> ImportReport:
    """Check, then import, in the caller's transaction (which commits at its edge)."""
    checked = check_orders(session, actor, data, file_name, on_progress=on_progress,
                           on_phase=on_phase)
    return write_orders(session, actor, checked, skip_bad_rows=skip_bad_rows,
                        on_progress=on_progress, on_phase=on_phase, job_id=job_id)

