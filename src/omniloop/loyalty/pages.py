"""The loyalty module's pages: program settings, the liability report, the points and risk
forms of the customer 360 page, the member panel of /pos and the wallet's member card.

Thin HTML over the loyalty services, like `campaigns/pages.py`: forms are read as strings,
money typed in major units (NT$100) and stored in minor units, times typed in the brand's
local time and stored in UTC; the services decide, and their refusals are shown beside the
field at fault with everything typed kept.

Who may do what follows the services: settings and the liability report need
`campaigns.read` to see and `campaigns.manage` to change; manual adjustments and the
blacklist are for owners and marketers (`customers.merge`); no-shows and the member panel
are for whoever works the counter (`pos.use`).

The member panel lives at /pos/member. A scanned member QR is valid for five minutes; the
panel then carries a *ticket* (signed: brand, staff member, customer; 30 minutes) in its
forms and links, so a cashier serving a slow customer is not cut off, and no form can be
pointed at a customer who never showed their card at this counter.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from omniloop.api.deps import SessionDep, client_ip
from omniloop.campaigns import claims
from omniloop.campaigns.consumer_pages import register_wallet_extra
from omniloop.campaigns.errors import CampaignNotFound
from omniloop.campaigns.guessing import guarded_lookup
from omniloop.campaigns.pos_pages import (
    BadInput,
    Counter,
    counter_for,
    currency_symbol,
    parse_total,
    pick_store,
    total_text,
)
from omniloop.campaigns.service import list_campaigns
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.core.money import minor_digits, to_major
from omniloop.core.qr import qr_svg
from omniloop.core.security import random_token
from omniloop.core.settings import get_settings
from omniloop.customers.errors import CustomerNotFound
from omniloop.customers.pages import CustomerFlag, profile_page, register_flags
from omniloop.customers.profiles import get_customer
from omniloop.loyalty.earning import earn_key
from omniloop.loyalty.jobs import run_daily
from omniloop.loyalty.ledger import (
    adjust_points,
    expiring_soon,
    find_entry,
    redeem_points,
)
from omniloop.loyalty.liability import liability_report
from omniloop.loyalty.member_card import (
    MEMBER_TOKEN_SECONDS,
    Member,
    bind_pos_card,
    member_of,
    member_token,
    scan_member,
)
from omniloop.loyalty.models import EntryKind, NoShowKind, PointsEntry, Rounding
from omniloop.loyalty.program import get_program, update_program
from omniloop.loyalty.risk import (
    RiskLevel,
    blacklist,
    cancel_no_show,
    flags_for,
    lift_blacklist,
    mark_no_show,
)
from omniloop.loyalty.schemas import ProgramIn
from omniloop.orders.models import Order
from omniloop.orders.schemas import OrderIn, OrderLineIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import Actor, Permission, system_actor
from omniloop.tenancy.errors import StoreNotFound
from omniloop.tenancy.models import Tenant
from omniloop.tenancy.tenants import get_tenant_by_slug
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import (
    MONEY_ERROR,
    FieldErrors,
    flash_message,
    redirect_done,
    refused,
    register_flash,
)
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import money, render

router = APIRouter(include_in_schema=False)

# After campaigns (5.5), before imports (6).
register(NavItem("loyalty", N_("Loyalty"), "/admin/loyalty", Permission.campaigns_read, 5.7))

register_flash("program_saved", N_("The loyalty program was saved. New rates apply from now "
                                   "on; points already earned keep their amount and expiry."))
register_flash("points_adjusted", N_("The points were adjusted."))
register_flash("no_show_marked", N_("The no-show was recorded."))
register_flash("no_show_known", N_("This booking or pickup was already marked as a no-show: "
                                   "nothing changed."))
register_flash("no_show_cancelled", N_("The no-show was cancelled and its penalty points "
                                       "returned."))
register_flash("blacklisted", N_("The customer is on the blacklist."))
register_flash("blacklist_lifted", N_("The blacklist entry was lifted."))
register_flash("pos_card_bound", N_("The card number now belongs to this member."))

ROUNDING_LABELS: dict[Rounding, str] = {
    Rounding.down: N_("Round down (NT$199 → 1 point)"),
    Rounding.nearest: N_("Round to nearest (NT$150 → 2 points)"),
    Rounding.up: N_("Round up (NT$101 → 2 points)"),
}
RISK_TONES = {RiskLevel.blacklisted: "danger", RiskLevel.high: "danger", RiskLevel.watch: "warn"}

NOTHING_SAVED = N_("Nothing was saved. Please correct the fields marked below.")
STALE_FORM = N_("This form is out of date. Please reload the page and try again.")
MAX_TIERS = 10
MAX_MONEY_MINOR = 10**12

FormStr = Annotated[str, Form(max_length=255)]
FormLong = Annotated[str, Form(max_length=1000)]
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


# --- reading typed values --------------------------------------------------------------------

class _Reader(FieldErrors):
    """Turns typed strings into numbers, collecting one message per bad field."""

    def __init__(self, currency: str) -> None:
        super().__init__()
        self.currency = currency

    @staticmethod
    def _clean(text: str) -> str:
        """Full-width digits from a Chinese IME, thousands separators, currency signs."""
        cleaned = unicodedata.normalize("NFKC", text)
        for noise in (",", " ", "NT$", "$", "元", "%", "×", "x", "X"):
            cleaned = cleaned.replace(noise, "")
        return cleaned

    def whole(self, field: str, text: str, low: int, high: int, *,
              optional: bool = False) -> int:
        """As typed with units ("NT$100", "30 元"); `low` where the field failed, so the rest
        of the form is still read."""
        number = super().whole(field, self._clean(text), low, high, optional=optional)
        return low if number is None else number

    def decimal(self, field: str, text: str, scale: int, low: int, high: int,
                message: str) -> int:
        """'1.25' with scale 10000 → 12500; must land on a whole number within [low, high]."""
        try:
            value = Decimal(self._clean(text)) * scale
        except InvalidOperation:
            value = Decimal(low - 1)
        if not value.is_finite() or not low <= value <= high or value != value.to_integral():
            self.fail(field, message)
            return low
        return int(value)

    def money(self, field: str, text: str, *, minimum: int = 0,
              message: str = MONEY_ERROR) -> int:
        """'1,200' or 'NT$99.50' → minor units, at least `minimum`."""
        return self.decimal(field, text, 10 ** minor_digits(self.currency), minimum,
                            MAX_MONEY_MINOR, message)


def _money_text(minor: int, currency: str) -> str:
    return total_text(minor, currency)


def _scaled_text(value: int, scale: int) -> str:
    number = Decimal(value) / scale
    return format(number.normalize(), "f") if number != number.to_integral() else str(int(number))


# --- program settings ------------------------------------------------------------------------

class ProgramForm(BaseModel):
    """The settings form as posted: strings, and one list per tiers-table column."""

    enabled: bool = False
    earn_points: str = ""
    earn_amount: str = ""
    rounding: str = Rounding.down.value
    point_value: str = ""
    max_share: str = ""
    min_redeem_points: str = ""
    expiry_months: str = ""
    tier_name: list[str] = []
    tier_code: list[str] = []
    tier_threshold: list[str] = []
    tier_multiplier: list[str] = []
    tier_campaign: list[str] = []
    no_show_penalty_points: str = ""
    risk_window_days: str = ""
    high_risk_no_shows: str = ""
    auto_blacklist_no_shows: str = ""
    auto_blacklist_days: str = ""

    def tier_rows(self, blanks: int = 0) -> list[dict[str, str]]:
        """The table's rows as typed, plus `blanks` empty ones to add tiers with."""
        columns = (self.tier_name, self.tier_code, self.tier_threshold, self.tier_multiplier,
                   self.tier_campaign)
        count = max((len(c) for c in columns), default=0)

        def cell(column: list[str], index: int) -> str:
            return column[index] if index < len(column) else ""

        rows = [{"name": cell(self.tier_name, i), "code": cell(self.tier_code, i),
                 "threshold": cell(self.tier_threshold, i),
                 "multiplier": cell(self.tier_multiplier, i),
                 "campaign": cell(self.tier_campaign, i)} for i in range(count)]
        rows = [r for r in rows if any(r[k].strip() for k in ("name", "code", "threshold",
                                                               "multiplier"))]
        room = max(0, min(blanks, MAX_TIERS - len(rows)))
        return rows + [{"name": "", "code": "", "threshold": "", "multiplier": "",
                        "campaign": ""} for _ in range(room)]


TIER_CODE = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # as schemas.TierCode
TIER_FIELD_ERRORS = {
    "name": N_("Name the tier in up to 60 characters."),
    "code": N_("Use lower-case letters, digits, '-' or '_', starting with a letter."),
}


def parse_program(form: ProgramForm, currency: str) -> tuple[ProgramIn | None, dict[str, str]]:
    """The form as a `ProgramIn`, or None and a message per form field."""
    read = _Reader(currency)
    if form.rounding not in {r.value for r in Rounding}:
        read.fail("rounding", N_("Choose a rounding rule."))
    tiers: list[dict[str, Any]] = []
    for index, row in enumerate(form.tier_rows()):
        name, code = row["name"].strip(), row["code"].strip().lower()
        if not 1 <= len(name) <= 60:
            read.fail(f"tiers.{index}.name", TIER_FIELD_ERRORS["name"])
        if not TIER_CODE.fullmatch(code):
            read.fail(f"tiers.{index}.code", TIER_FIELD_ERRORS["code"])
        tiers.append({
            "name": name, "code": code,
            "threshold_minor": read.money(f"tiers.{index}.threshold", row["threshold"]),
            "multiplier_bp": read.decimal(
                f"tiers.{index}.multiplier", row["multiplier"], 10000, 0, 100_000,
                N_("Enter a multiplier from 0 to 10, like 1 or 1.25.")),
            "birthday_campaign_id": row["campaign"].strip() or None,
        })
    if not tiers:
        read.fail("tiers", N_("Keep at least one tier, starting at 0."))
    values: dict[str, Any] = {
        "enabled": form.enabled,
        "earn_points": read.whole("earn_points", form.earn_points, 0, 10_000),
        "earn_unit_minor": read.money("earn_amount", form.earn_amount, minimum=1,
                                      message=N_("Enter an amount above 0, like 100.")),
        "rounding": form.rounding,
        "point_value_minor": read.money("point_value", form.point_value, minimum=1,
                                        message=N_("Enter an amount above 0, like 1.")),
        "max_redeem_share_bp": read.decimal(
            "max_share", form.max_share, 100, 0, 10000,
            N_("Enter a share from 0 to 100%, like 50 or 12.5.")),
        "min_redeem_points": read.whole("min_redeem_points", form.min_redeem_points, 1,
                                        1_000_000),
        "expiry_months": read.whole("expiry_months", form.expiry_months, 0, 120),
        "tiers": tiers,
        "no_show_penalty_points": read.whole("no_show_penalty_points",
                                             form.no_show_penalty_points, 0, 1_000_000),
        "risk_window_days": read.whole("risk_window_days", form.risk_window_days, 1, 3650),
        "high_risk_no_shows": read.whole("high_risk_no_shows", form.high_risk_no_shows, 1, 100),
        "auto_blacklist_no_shows": read.whole("auto_blacklist_no_shows",
                                              form.auto_blacklist_no_shows, 0, 100),
        "auto_blacklist_days": read.whole("auto_blacklist_days", form.auto_blacklist_days,
                                          1, 1830),
    }
    if read.errors:
        return None, read.errors
    try:
        return ProgramIn.model_validate(values), {}
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            if len(loc) >= 3 and loc[0] == "tiers":
                read.fail(f"tiers.{loc[1]}.{loc[2]}",
                          TIER_FIELD_ERRORS.get(loc[2], N_("Check this value.")))
            else:
                read.fail(loc[0] if loc else "form", N_("Check this value."))
        return None, read.errors


def program_form(session: Session, tenant: Tenant) -> ProgramForm:
    """The stored program as the form shows it."""
    program = get_program(session, tenant.id)
    currency = tenant.currency
    tiers = sorted(program.tiers or [], key=lambda t: int(t.get("threshold_minor", 0)))
    return ProgramForm(
        enabled=program.enabled, earn_points=str(program.earn_points),
        earn_amount=_money_text(program.earn_unit_minor, currency),
        rounding=program.rounding.value,
        point_value=_money_text(program.point_value_minor, currency),
        max_share=_scaled_text(program.max_redeem_share_bp, 100),
        min_redeem_points=str(program.min_redeem_points),
        expiry_months=str(program.expiry_months),
        tier_name=[str(t.get("name", "")) for t in tiers],
        tier_code=[str(t.get("code", "")) for t in tiers],
        tier_threshold=[_money_text(int(t.get("threshold_minor", 0)), currency) for t in tiers],
        tier_multiplier=[_scaled_text(int(t.get("multiplier_bp", 10000)), 10000)
                         for t in tiers],
        tier_campaign=[str(t.get("birthday_campaign_id") or "") for t in tiers],
        no_show_penalty_points=str(program.no_show_penalty_points),
        risk_window_days=str(program.risk_window_days),
        high_risk_no_shows=str(program.high_risk_no_shows),
        auto_blacklist_no_shows=str(program.auto_blacklist_no_shows),
        auto_blacklist_days=str(program.auto_blacklist_days))


@dataclass(frozen=True)
class DailyResult:
    expired: int
    upgraded: int
    downgraded: int
    birthdays: int
    refused: int


def _daily_text(value: str | None) -> str | None:
    """The flash of the daily job, from `?daily=expired.up.down.birthdays.refused`: numbers
    only, so a crafted link can at most show wrong counts, never text."""
    if not value or not re.fullmatch(r"\d{1,9}(\.\d{1,9}){4}", value):
        return None
    run = DailyResult(*(int(part) for part in value.split(".")))
    text = gettext("Daily job done: {expired} lots expired, {upgraded} members moved up and "
                   "{downgraded} down a tier, {birthdays} birthday coupons given.").format(
        expired=run.expired, upgraded=run.upgraded, downgraded=run.downgraded,
        birthdays=run.birthdays)
    if run.refused:
        text += " " + gettext("{count} birthday coupons were refused by their campaign "
                              "(ended or out of quota); the next run tries again.").format(
            count=run.refused)
    return text


def _settings_page(admin: AdminContext, session: Session, *, form: ProgramForm,
                   errors: dict[str, str], flash: str | None = None,
                   status_code: int = status.HTTP_200_OK) -> Response:
    can_manage = admin.actor.can(Permission.campaigns_manage)
    campaigns = list_campaigns(session, admin.actor)
    return render(admin.request, "admin/loyalty/settings.html", admin.template_values(
        "loyalty", form=form, errors=errors, tiers=form.tier_rows(blanks=2 if can_manage else 0),
        campaigns=campaigns, roundings=list(Rounding), rounding_labels=ROUNDING_LABELS,
        can_manage=can_manage, flash=flash, symbol=currency_symbol(admin.tenant.currency),
        flash_kind="error" if errors else "ok"), status_code=status_code)


@router.get("/admin/loyalty")
def settings_page(admin: Admin, session: SessionDep, done: str | None = None,
                  daily: str | None = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    return _settings_page(admin, session, form=program_form(session, admin.tenant), errors={},
                          flash=_daily_text(daily) or flash_message(done))


@router.post("/admin/loyalty", dependencies=[CsrfChecked])
def save_settings(admin: Admin, session: SessionDep,
                  form: Annotated[ProgramForm, Form()]) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    data, errors = parse_program(form, admin.tenant.currency)
    if data is None:
        return _settings_page(admin, session, form=form, errors=errors,
                              status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        update_program(session, admin.actor, data)
    except OmniloopError as exc:
        message, status_code = refused(session, exc), exc.status
        if isinstance(exc, CampaignNotFound):  # a form choice, not a missing page
            message = gettext("Choose a birthday campaign from the list.")
            status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        field = exc.field if exc.field and exc.field != "tiers" else "tiers"
        return _settings_page(admin, session, form=form, errors={field: message},
                              status_code=status_code)
    return redirect_done("/admin/loyalty", "program_saved")


@router.post("/admin/loyalty/daily", dependencies=[CsrfChecked])
def daily_job(admin: Admin, session: SessionDep) -> Response:
    """What `omniloop loyalty daily` runs, now. Idempotent: running it twice is harmless."""
    admin.actor.require(Permission.campaigns_manage)
    run = run_daily(session, admin.actor)
    counts = (run.expired_lots, run.tiers.upgraded, run.tiers.downgraded,
              run.birthdays.issued, len(run.birthdays.refused))
    return RedirectResponse("/admin/loyalty?" + urlencode(
        {"daily": ".".join(str(c) for c in counts)}), status_code=303)


# --- liability report ------------------------------------------------------------------------

@dataclass(frozen=True)
class MonthBar:
    label: str
    month: str | None
    points: int
    value_minor: int
    lots: int
    percent: float  # of the largest month: the bar's width


@router.get("/admin/loyalty/liability")
def liability_page(admin: Admin, session: SessionDep) -> Response:
    report = liability_report(session, admin.actor)
    peak = max((m.points for m in report.months), default=0) or 1
    bars = [MonthBar(label=m.month or gettext("Never expire"), month=m.month, points=m.points,
                     value_minor=m.value_minor, lots=m.lots,
                     percent=round(100 * m.points / peak, 1)) for m in report.months]
    return render(admin.request, "admin/loyalty/liability.html", admin.template_values(
        "loyalty", report=report, bars=bars))


def _decimal(minor: int, currency: str) -> str:
    """Minor units as a plain decimal with the currency's digits: 62000 → "620.00"."""
    return format(to_major(minor, currency), f".{minor_digits(currency)}f")


@router.get("/admin/loyalty/liability.csv")
def liability_csv(admin: Admin, session: SessionDep) -> Response:
    """The same table for finance: one row per expiry month, values in major units."""
    report = liability_report(session, admin.actor)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["expiry_month", "points", "value", "currency", "lots"])
    for month in report.months:
        writer.writerow([month.month or "never", month.points,
                         _decimal(month.value_minor, report.currency), report.currency,
                         month.lots])
    writer.writerow(["total", report.points, _decimal(report.value_minor, report.currency),
                     report.currency, sum(m.lots for m in report.months)])
    today = to_local(utcnow(), admin.tenant.timezone).date().isoformat()
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="points-liability-{today}.csv"',
        "Cache-Control": "no-store"})


# --- the 360 page: adjustments, no-shows, blacklist --------------------------------------------

def _back_to(customer_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/customers/{customer_id}?{urlencode({'done': done})}"
                            "#section-points", status_code=303)


def _again(admin: AdminContext, session: Session, customer_id: str, form: str,
           values: dict[str, str], errors: dict[str, str], status_code: int) -> Response:
    """The 360 page again, the refused form open with what was typed and why."""
    return profile_page(admin, session, customer_id, flash=gettext(NOTHING_SAVED),
                        flash_kind="error",
                        forms={form: {"typed": values, "errors": errors}},
                        status_code=status_code)


def parse_points(text: str) -> int | None:
    """'+50', '-20', '１,０００' → the signed whole number; None when it is not one."""
    cleaned = unicodedata.normalize("NFKC", text).replace(",", "").replace(" ", "")
    cleaned = cleaned.replace("−", "-")
    if not re.fullmatch(r"[+-]?\d{1,12}", cleaned):
        return None
    return int(cleaned)


@router.post("/admin/customers/{customer_id}/points/adjust", dependencies=[CsrfChecked])
def adjust(customer_id: str, admin: Admin, session: SessionDep, points: FormStr = "",
           reason: FormStr = "", key: FormStr = "") -> Response:
    """A manual adjustment under the key made when the form was rendered: a double submit
    adjusts once."""
    admin.actor.require(Permission.customers_merge)  # owners and marketers, as the API
    customer = get_customer(session, admin.actor, customer_id)
    values = {"points": points, "reason": reason, "key": key}
    errors: dict[str, str] = {}
    amount = parse_points(points)
    if amount is None or amount == 0:
        errors["points"] = gettext(N_("Enter a whole number of points other than 0, like 50 "
                                      "or -20."))
    if not reason.strip():
        errors["reason"] = gettext(N_("Give a reason: adjustments are audited."))
    if not _KEY.fullmatch(key):
        errors["form"] = gettext(STALE_FORM)
    if errors or amount is None:
        return _again(admin, session, customer.id, "adjust", values, errors, 422)
    try:
        adjust_points(session, admin.actor, customer.id, amount, reason,
                      key=f"adjust:page:{key}")
    except OmniloopError as exc:
        field = "reason" if exc.field == "reason" else "points"
        return _again(admin, session, customer.id, "adjust", values,
                      {field: refused(session, exc)}, exc.status)
    return _back_to(customer.id, "points_adjusted")


def _local_moment(text: str, timezone: str) -> datetime | None:
    """A datetime-local value ('2026-11-20T19:00') read in the brand's time zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)


@router.post("/admin/customers/{customer_id}/no-shows", dependencies=[CsrfChecked])
def add_no_show(customer_id: str, admin: Admin, session: SessionDep, kind: FormStr = "",
                reference: FormStr = "", due_at: FormStr = "", store_id: FormStr = "",
                note: FormStr = "") -> Response:
    admin.actor.require(Permission.pos_use)
    customer = get_customer(session, admin.actor, customer_id)
    values = {"kind": kind, "reference": reference, "due_at": due_at, "store_id": store_id,
              "note": note}
    errors: dict[str, str] = {}
    if kind not in {k.value for k in NoShowKind}:
        errors["kind"] = gettext(N_("Choose a booking or a reserved pickup."))
    if not reference.strip() or len(reference.strip()) > 64:
        errors["reference"] = gettext(N_("Enter the booking or order number (up to 64 "
                                         "characters)."))
    moment = _local_moment(due_at, admin.tenant.timezone)
    if moment is None:
        errors["due_at"] = gettext(N_("Enter a date and time."))
    if errors or moment is None:
        return _again(admin, session, customer.id, "no_show", values, errors, 422)
    try:
        _, created = mark_no_show(session, admin.actor, customer.id, kind=NoShowKind(kind),
                                  reference=reference.strip(), due_at=moment,
                                  store_id=store_id or None, note=note)
    except OmniloopError as exc:
        field = ("store_id" if isinstance(exc, StoreNotFound) else
                 {"due_at": "due_at"}.get(exc.field or "", "reference"))
        return _again(admin, session, customer.id, "no_show", values,
                      {field: refused(session, exc)}, exc.status)
    return _back_to(customer.id, "no_show_marked" if created else "no_show_known")


@router.post("/admin/no-shows/{no_show_id}/cancel", dependencies=[CsrfChecked])
def cancel(no_show_id: str, admin: Admin, session: SessionDep) -> Response:
    no_show = cancel_no_show(session, admin.actor, no_show_id[:40])
    return _back_to(no_show.customer_id, "no_show_cancelled")


@router.post("/admin/customers/{customer_id}/blacklist", dependencies=[CsrfChecked])
def add_blacklist(customer_id: str, admin: Admin, session: SessionDep, reason: FormStr = "",
                  until: FormStr = "") -> Response:
    """Blacklisted until the end of the day typed, in the brand's time zone."""
    admin.actor.require(Permission.customers_merge)
    customer = get_customer(session, admin.actor, customer_id)
    values = {"reason": reason, "until": until}
    errors: dict[str, str] = {}
    if not reason.strip():
        errors["reason"] = gettext(N_("Give a reason: staff will see it."))
    try:
        last_day = date.fromisoformat(until.strip())
    except ValueError:
        last_day = None
        errors["until"] = gettext(N_("Enter the last day, like 2026-12-31."))
    if errors or last_day is None:
        return _again(admin, session, customer.id, "blacklist", values, errors, 422)
    ends_at = datetime.combine(last_day + timedelta(days=1), datetime.min.time(),
                               ZoneInfo(admin.tenant.timezone)).astimezone(UTC)
    try:
        blacklist(session, admin.actor, customer.id, reason=reason, ends_at=ends_at)
    except OmniloopError as exc:
        field = "reason" if exc.field == "reason" else "until"
        return _again(admin, session, customer.id, "blacklist", values,
                      {field: refused(session, exc)}, exc.status)
    return _back_to(customer.id, "blacklisted")


@router.post("/admin/blacklist/{entry_id}/lift", dependencies=[CsrfChecked])
def lift(entry_id: str, admin: Admin, session: SessionDep) -> Response:
    entry = lift_blacklist(session, admin.actor, entry_id[:40])
    return _back_to(entry.customer_id, "blacklist_lifted")


def _risk_flags(session: Session, actor: Actor,
                customer_ids: list[str]) -> dict[str, list[CustomerFlag]]:
    """Badges for the customer pages: one `flags_for` call for all rows."""
    found: dict[str, list[CustomerFlag]] = {}
    for customer_id, flag in flags_for(session, actor.tenant_id, customer_ids).items():
        if flag.level == RiskLevel.none:
            continue
        detail = ""
        if flag.level == RiskLevel.blacklisted and flag.blacklisted_until is not None:
            detail = gettext("{reason} · until {date}").format(
                reason=flag.blacklist_reason or "",
                date=flag.blacklisted_until.strftime("%Y-%m-%d"))
        elif flag.no_shows:
            detail = gettext("{count} no-shows recently").format(count=flag.no_shows)
        found[customer_id] = [CustomerFlag(flag.level, flag.label, RISK_TONES[flag.level],
                                           detail)]
    return found


register_flags(_risk_flags)


# --- /pos/member: the member panel at the counter --------------------------------------------

TICKET_SECONDS = 30 * 60
_TICKET_SALT = "omniloop.pos-member"
TICKET_EXPIRED = N_("This member was scanned more than 30 minutes ago. Scan the card again.")
AMOUNT_MISSING = N_("Enter the amount paid, such as 350.")
DISCOUNT_OVER = N_("The points paid {discount} of this purchase: enter the whole basket total, "
                   "before the points.")
SALE_SKU = "POS-SALE"


def _tickets() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().resolved_secret_key(), salt=_TICKET_SALT)


def member_ticket(admin: AdminContext, customer_id: str) -> str:
    return _tickets().dumps([admin.tenant.id, admin.staff.id, customer_id])


def ticket_customer(admin: AdminContext, ticket: str) -> str | None:
    """The customer of a ticket made for this staff member in the last 30 minutes."""
    try:
        value = _tickets().loads(ticket, max_age=TICKET_SECONDS)
    except BadSignature:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or value[:2] != [admin.tenant.id, admin.staff.id] or not isinstance(value[2], str)):
        return None
    return value[2]


@dataclass(frozen=True)
class PanelResult:
    """What the last action did, shown at the top of the panel."""

    redeemed_points: int = 0
    discount_minor: int = 0
    basket_minor: int = 0
    order: Order | None = None
    earned: int = 0


def _member_page(counter: Counter, session: Session, *, member: Member | None = None,
                 ticket: str = "", result: PanelResult | None = None,
                 redeem_entry: str = "", values: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None, error: str | None = None,
                 error_code: str | None = None, flash: str | None = None,
                 status_code: int = 200) -> Response:
    program = get_program(session, counter.admin.tenant.id)
    return render(counter.admin.request, "pos/member.html", counter.values(
        member=member, ticket=ticket, result=result, redeem_entry=redeem_entry,
        values=values or {}, errors=errors or {}, error_message=error,
        error_code=error_code, flash=flash, program=program,
        risk_tone=RISK_TONES.get(member.risk.level, "") if member else "",
        redeem_key="pts-" + random_token(18), sale_key="sale-" + random_token(18),
        share=_scaled_text(program.max_redeem_share_bp, 100)), status_code=status_code)


def _panel(request: Request, admin: AdminContext, session: Session,
           ticket: str) -> tuple[Counter | None, Member | None, Response | None]:
    """The counter, and the member a ticket names; or the response to send instead."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return None, None, pick_store()
    customer_id = ticket_customer(admin, ticket)
    if customer_id is None:
        return counter, None, _member_page(counter, session, error=gettext(TICKET_EXPIRED),
                                           error_code="ticket_expired", status_code=400)
    try:
        return counter, member_of(session, admin.actor, customer_id), None
    except CustomerNotFound as exc:
        return counter, None, _member_page(counter, session, error=refused(session, exc),
                                           error_code=exc.code, status_code=exc.status)


def _panel_url(ticket: str, **params: str) -> str:
    return "/pos/member?" + urlencode({"m": ticket, **params})


@router.get("/pos/member")
def member_panel(request: Request, admin: Admin, session: SessionDep, m: str = "",
                 redeemed: str = "", basket: str = "", order: str = "", total: str = "",
                 done: str | None = None) -> Response:
    """The scan form, or (with a ticket) the member's panel and the last action's result."""
    if not m:
        counter = counter_for(request, admin, session)
        if counter is None:
            return pick_store()
        return _member_page(counter, session, flash=flash_message(done))
    counter, member, early = _panel(request, admin, session, m[:1000])
    if early is not None or counter is None or member is None:
        return early or pick_store()
    result, redeem_entry = None, ""
    program = get_program(session, admin.tenant.id)
    if redeemed:
        entry = session.get(PointsEntry, (admin.tenant.id, redeemed[:40]))
        if (entry is not None and entry.customer_id == member.customer.id
                and entry.kind == EntryKind.redeem):
            basket_minor = int(basket) if basket.isdigit() else 0
            result = PanelResult(redeemed_points=-entry.points,
                                 discount_minor=-entry.points * program.point_value_minor,
                                 basket_minor=basket_minor)
            redeem_entry = entry.id
    if order:
        placed = session.get(Order, (admin.tenant.id, order[:40]))
        if placed is not None and placed.customer_id == member.customer.id:
            earned = find_entry(session, admin.tenant.id, earn_key(placed.id))
            result = PanelResult(order=placed, earned=earned.points if earned else 0)
    values = {}
    if total and result is None:  # the basket total typed before the scan
        values["total"] = values["amount"] = total[:32]
    if result is not None and result.basket_minor:
        values["amount"] = total_text(result.basket_minor, admin.tenant.currency)
    return _member_page(counter, session, member=member, ticket=m, result=result,
                        redeem_entry=redeem_entry, values=values, flash=flash_message(done))


@router.post("/pos/member/scan", dependencies=[CsrfChecked])
def member_scan(request: Request, admin: Admin, session: SessionDep, token: FormLong = "",
                code: FormLong = "", total: FormStr = "") -> Response:
    """Scan (or paste) the member QR; `code` and `total` are the coupon box's fields, for a
    member card scanned there (see `pos_pages.check`): the basket total typed before it
    fills the panel's forms."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    presented = (token or code).strip()
    if not presented:
        return _member_page(counter, session, error=gettext(N_("Scan the member's QR code.")),
                            error_code="invalid_input", status_code=422)
    try:
        with guarded_lookup(admin.actor, client_ip(request)):
            member = scan_member(session, admin.actor, presented)
    except OmniloopError as exc:
        return _member_page(counter, session, error=refused(session, exc), error_code=exc.code,
                            status_code=exc.status)
    basket = {}
    try:
        basket_minor = parse_total(total, admin.tenant.currency) if total.strip() else 0
    except BadInput:
        basket_minor = 0
    if basket_minor:
        basket["total"] = total_text(basket_minor, admin.tenant.currency)
    return RedirectResponse(_panel_url(member_ticket(admin, member.customer.id), **basket),
                            status_code=303)


@router.post("/pos/member/redeem", dependencies=[CsrfChecked])
def member_redeem(request: Request, admin: Admin, session: SessionDep, m: FormLong = "",
                  total: FormStr = "", points: FormStr = "", key: FormStr = "") -> Response:
    """Pay with points on this basket, once per form (the key made when it was shown)."""
    counter, member, early = _panel(request, admin, session, m)
    if early is not None or counter is None or member is None:
        return early or pick_store()
    values = {"total": total, "points": points}
    errors: dict[str, str] = {}
    total_minor = 0
    try:
        total_minor = parse_total(total, admin.tenant.currency)
    except BadInput as bad:
        errors["total"] = bad.message
    amount = parse_points(points)
    if amount is None or amount <= 0:
        errors["points"] = gettext(N_("Enter the points to use, a whole number above 0."))
    if not _KEY.fullmatch(key):
        errors["points"] = gettext(STALE_FORM)
    if errors or amount is None:
        session.rollback()
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            errors=errors, status_code=422)
    try:
        result = redeem_points(session, admin.actor, member.customer.id, amount,
                               order_total_minor=total_minor, key=f"pos-points:page:{key}")
    except OmniloopError as exc:
        message = refused(session, exc)
        member = member_of(session, admin.actor, member.customer.id)
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            errors={"points": message}, status_code=exc.status)
    return RedirectResponse(_panel_url(m, redeemed=result.entry.id, basket=str(total_minor)),
                            status_code=303)


@router.post("/pos/member/purchase", dependencies=[CsrfChecked])
def member_purchase(request: Request, admin: Admin, session: SessionDep, m: FormLong = "",
                    amount: FormStr = "", key: FormStr = "",
                    points_entry: FormStr = "") -> Response:
    """Record the purchase on the member's profile: an order of this store, which earns
    points as any order does. After paying with points the discount goes on the order, so
    points are earned on what was paid. Once per form: the key is the order's external id."""
    counter, member, early = _panel(request, admin, session, m)
    if early is not None or counter is None or member is None:
        return early or pick_store()
    values = {"amount": amount}
    if not _KEY.fullmatch(key):
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            errors={"amount": gettext(STALE_FORM)}, status_code=422)
    # After paying with points, the purchase is that redemption's: one order per
    # redemption, whatever the reloads, so its discount can never go on two orders.
    entry = session.get(PointsEntry, (admin.tenant.id, points_entry[:40])) if points_entry else None
    if entry is not None and (entry.customer_id != member.customer.id
                              or entry.kind != EntryKind.redeem):
        entry = None
    external_id = f"pos-points-{entry.id}" if entry is not None else f"pos-member-{key}"
    existing = session.scalar(select(Order).where(Order.tenant_id == admin.tenant.id,
                                                  Order.external_id == external_id))
    if existing is not None:  # the same purchase sent again: show the first result
        return RedirectResponse(_panel_url(m, order=existing.id), status_code=303)
    discount = (-entry.points * get_program(session, admin.tenant.id).point_value_minor
                if entry is not None else 0)
    try:
        amount_minor = parse_total(amount, admin.tenant.currency)
        if amount_minor <= 0:
            raise BadInput(gettext(AMOUNT_MISSING))
        if discount > amount_minor:
            raise BadInput(gettext(DISCOUNT_OVER).format(
                discount=money(discount, admin.tenant.currency)))
    except BadInput as bad:
        session.rollback()
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            redeem_entry=points_entry, errors={"amount": bad.message},
                            status_code=422)
    try:
        placed, _ = ingest_order(session, admin.actor, OrderIn(
            external_id=external_id, source="pos", store_id=counter.store.id,
            customer_id=member.customer.id,
            lines=[OrderLineIn(sku=SALE_SKU, name="In-store purchase", quantity=1,
                               unit_price_minor=amount_minor)],
            discount_minor=discount, paid_at=utcnow()))
    except ValidationError:  # beyond what an order line takes (NT$20,000,000)
        session.rollback()
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            redeem_entry=points_entry, errors={"amount": gettext(MONEY_ERROR)},
                            status_code=422)
    except OmniloopError as exc:
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            redeem_entry=points_entry, errors={"amount": refused(session, exc)},
                            status_code=exc.status)
    return RedirectResponse(_panel_url(m, order=placed.id), status_code=303)


@router.post("/pos/member/card", dependencies=[CsrfChecked])
def member_card_bind(request: Request, admin: Admin, session: SessionDep, m: FormLong = "",
                     card_number: FormStr = "") -> Response:
    counter, member, early = _panel(request, admin, session, m)
    if early is not None or counter is None or member is None:
        return early or pick_store()
    values = {"card_number": card_number}
    if not card_number.strip():
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            errors={"card_number": gettext(N_("Scan or type the card "
                                                              "number."))},
                            status_code=422)
    try:
        bind_pos_card(session, admin.actor, member.customer.id, card_number.strip())
    except OmniloopError as exc:
        message = refused(session, exc)
        return _member_page(counter, session, member=member, ticket=m, values=values,
                            errors={"card_number": message}, status_code=exc.status)
    return RedirectResponse(_panel_url(m, done="pos_card_bound"), status_code=303)


# --- the wallet's member card ------------------------------------------------------------------

WALLET_ACTOR = "wallet"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
             "X-Robots-Tag": "noindex, nofollow"}


@dataclass(frozen=True)
class MemberCard:
    balance: int
    value_minor: int
    currency: str
    tier_name: str | None
    expiring_points: int
    expiring_on: str  # the first day some expire, in the brand's time zone
    qr: Markup
    expires_in: int
    refresh_url: str


def _member_qr(tenant: Tenant, customer_id: str) -> tuple[Markup, int]:
    """A fresh member QR (segno's SVG of our own token: markup, not text)."""
    return (Markup(qr_svg(member_token(tenant.id, customer_id), scale=5, css_class="qr")),
            MEMBER_TOKEN_SECONDS)


def member_card(session: Session, tenant: Tenant, customer_id: str,
                wallet_token: str) -> MemberCard | None:
    """The member card of the full wallet; None while the brand's program is switched off."""
    program = get_program(session, tenant.id)
    if not program.enabled:
        return None
    member = member_of(session, system_actor(tenant.id, WALLET_ACTOR), customer_id)
    soon = expiring_soon(session, tenant.id, customer_id=member.customer.id)
    qr, seconds = _member_qr(tenant, member.customer.id)
    first = min((when for _, _, when in soon), default=None)
    return MemberCard(
        balance=member.balance, value_minor=member.balance * member.point_value_minor,
        currency=tenant.currency, tier_name=member.tier_name,
        expiring_points=sum(points for _, points, _ in soon),
        expiring_on=to_local(first, tenant.timezone).strftime("%Y-%m-%d") if first else "",
        qr=qr, expires_in=seconds,
        refresh_url=f"/c/{tenant.slug}/wallet/{wallet_token}/member-qr")


register_wallet_extra("member_card", member_card)


@router.get("/c/{tenant_slug}/wallet/{token}/member-qr")
def member_qr(tenant_slug: str, token: str, session: SessionDep) -> Response:
    """A fresh member QR for the wallet page to swap in before the shown one runs out.
    Answers only for a full wallet link: a single-coupon link is not proof of who holds it."""
    not_found = JSONResponse({"error": {"code": "not_found", "message": "Not found."}},
                             status_code=404, headers=_NO_STORE)
    try:
        tenant = get_tenant_by_slug(session, tenant_slug)
        access = claims.wallet_access(token, tenant.id)
        customer = get_customer(session, system_actor(tenant.id, WALLET_ACTOR),
                                access.customer_id)
    except OmniloopError:
        return not_found
    if access.only_coupon_id is not None or customer.erased_at is not None:
        return not_found
    qr, seconds = _member_qr(tenant, customer.id)
    expires = utcnow() + timedelta(seconds=seconds)
    return JSONResponse({"svg": str(qr), "expires_in": seconds,
                         "expires_at": as_utc(expires).isoformat()}, headers=_NO_STORE)
