"""Admin pages for campaigns: the list, the create and edit form, and the campaign's page
with its status buttons, claim link and report.

Thin HTML over `campaigns.service` and `campaigns.report`: the form is read as strings,
turned into a `CampaignCreate` (money typed in major units, NT$100, stored in minor units;
times typed in the brand's local time, stored in UTC; the holdout typed in percent, stored in
basis points), and the service decides. Its refusals name the field at fault, and the form
shows them beside that field with everything typed kept.

Owners and marketers manage campaigns (`campaigns.manage`); store managers read them and see
the report for their stores (`campaigns.read`); cashiers have neither and get 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, status
from fastapi.responses import Response
from markupsafe import Markup
from pydantic import BaseModel, ValidationError

from omniloop.api.deps import SessionDep
from omniloop.campaigns import report as reports
from omniloop.campaigns import service
from omniloop.campaigns.errors import (
    CampaignInvalid,
    CampaignLocked,
    CampaignStatusConflict,
    SharedCodeTaken,
)
from omniloop.campaigns.models import Campaign, CampaignKind, CampaignStatus, CodeMode, Stacking
from omniloop.campaigns.rules import STATUS_LABELS, current_status, describe_value
from omniloop.campaigns.schemas import MAX_MINOR, CampaignCreate, CampaignUpdate
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.core.money import minor_digits, to_major, to_minor
from omniloop.core.qr import qr_svg
from omniloop.core.settings import get_settings
from omniloop.tenancy.access import Permission
from omniloop.tenancy.stores import list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import (
    MONEY_ERROR,
    WHOLE_ERROR,
    FieldErrors,
    field_errors,
    flash_message,
    redirect_done,
    refused,
    register_flash,
)
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

# Between customers (5) and imports (6).
register(NavItem("campaigns", N_("Campaigns"), "/admin/campaigns", Permission.campaigns_read,
                 5.5))

register_flash("campaign_created", N_("The campaign was created as a draft. Launch it when "
                                      "it is ready."))
register_flash("campaign_saved", N_("The campaign was saved."))
register_flash("campaign_launched", N_("The campaign was launched."))
register_flash("campaign_resumed", N_("The campaign was resumed."))
register_flash("campaign_paused", N_("The campaign was paused: no claims or redemptions "
                                     "until it is resumed."))
register_flash("campaign_ended", N_("The campaign was ended."))

KIND_LABELS: dict[CampaignKind, str] = {
    CampaignKind.amount_off: N_("Amount off"),
    CampaignKind.percent_off: N_("Percentage off"),
    CampaignKind.free_item: N_("Free item"),
    CampaignKind.voucher: N_("Prepaid voucher"),
    CampaignKind.gift: N_("Gift"),
}
STACKING_LABELS: dict[Stacking, str] = {
    Stacking.exclusive: N_("Not combinable"),
    Stacking.combinable: N_("Combinable with other combinable coupons"),
}
CODE_MODE_LABELS: dict[CodeMode, str] = {
    CodeMode.unique: N_("A unique code per coupon"),
    CodeMode.shared: N_("One shared code for everyone"),
}
# The claim channels the claim page and integrations use; others set through the API are
# kept and shown as they are.
CHANNEL_LABELS: dict[str, str] = {
    "line": N_("LINE"), "web": N_("Web page"), "email": N_("E-mail"), "sms": N_("SMS"),
    "qr": N_("QR code in store"),
}
WEEKDAY_LABELS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"),
                  N_("Saturday"), N_("Sunday"))
# Badge colour per status as of now.
STATUS_BADGES: dict[CampaignStatus, str] = {
    CampaignStatus.draft: "off", CampaignStatus.scheduled: "info",
    CampaignStatus.active: "ok", CampaignStatus.paused: "warn",
    CampaignStatus.ended: "off",
}

# Form fields typed in other units than the schema's, by schema field.
FORM_FIELDS: dict[str, str] = {
    "value_minor": "value", "max_discount_minor": "max_discount",
    "voucher_price_minor": "voucher_price", "min_spend_minor": "min_spend",
    "budget_minor": "budget", "holdout_share_bp": "holdout_percent",
}
WHEN_ERROR = N_("Enter a date and time.")
# Messages for the schema's own validation errors, by schema field.
FIELD_ERRORS: dict[str, str] = {
    "name": N_("Enter a name of up to 120 characters."),
    "description": N_("The description can have up to 4,000 characters."),
    "terms": N_("The terms can have up to 8,000 characters."),
    "kind": N_("Choose a kind of offer."),
    "starts_at": WHEN_ERROR,
    "ends_at": WHEN_ERROR,
    "coupon_valid_from": WHEN_ERROR,
    "coupon_valid_until": WHEN_ERROR,
    "value_minor": MONEY_ERROR,
    "max_discount_minor": MONEY_ERROR,
    "voucher_price_minor": MONEY_ERROR,
    "min_spend_minor": MONEY_ERROR,
    "budget_minor": MONEY_ERROR,
    "free_sku": N_("Enter a SKU of up to 64 characters."),
    "gift_name": N_("Name the gift in up to 120 characters."),
    "skus": N_("List up to 500 SKUs of up to 64 characters each, separated by commas."),
    "categories": N_("List up to 200 categories of up to 80 characters each, separated by "
                     "commas."),
    "store_ids": N_("Choose stores from the list."),
    "weekdays": N_("Choose days from the list."),
    "hours_start": N_("Enter a time like 14:00."),
    "hours_end": N_("Enter a time like 14:00."),
    "claim_channels": N_("Channel names are lower-case letters, digits and '_'."),
    "stacking": N_("Choose how it combines with other coupons."),
    "code_mode": N_("Choose how codes work."),
    "shared_code": N_("A code has 3 to 40 letters, digits, '-' or '_', starting with a "
                      "letter or digit."),
    "code_pattern": N_("A code pattern has 4 to 64 characters."),
}


class CampaignForm(BaseModel):
    """The campaign form as posted: strings and lists of strings, checked by `_parse`."""

    name: str = ""
    description: str = ""
    terms: str = ""
    kind: str = CampaignKind.amount_off.value
    value: str = ""
    percent_off: str = ""
    max_discount: str = ""
    free_sku: str = ""
    gift_name: str = ""
    voucher_price: str = ""
    starts_at: str = ""
    ends_at: str = ""
    validity: str = "campaign"  # campaign | days | dates
    coupon_valid_days: str = ""
    coupon_valid_from: str = ""
    coupon_valid_until: str = ""
    store_ids: list[str] = []
    weekdays: list[str] = []
    hours_start: str = ""
    hours_end: str = ""
    skus: str = ""
    categories: str = ""
    min_spend: str = ""
    per_customer_limit: str = "1"
    quota: str = ""
    budget: str = ""
    stacking: str = Stacking.exclusive.value
    holdout_percent: str = ""
    claim_channels: list[str] = []
    new_customers_only: bool = False
    code_mode: str = CodeMode.unique.value
    shared_code: str = ""
    code_pattern: str = "####-####"


# --- reading the form -----------------------------------------------------------------------

def _money_text(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    major = to_major(minor, currency)
    if major == major.to_integral_value():
        return str(int(major))
    return format(major.normalize(), "f")


def _local_input(value: datetime | None, timezone: str) -> str:
    """A stored UTC time as a datetime-local input shows it: the brand's wall clock."""
    return "" if value is None else to_local(value, timezone).strftime("%Y-%m-%dT%H:%M")


def _split(text: str) -> list[str]:
    """'CF-LATTE, CF-MOCHA，DS-BASQUE' → the items; full-width commas too (IME typing)."""
    return [item.strip() for item in text.replace("，", ",").replace("、", ",").split(",")
            if item.strip()]


class _Reader(FieldErrors):
    """Turns the form's strings into schema values, collecting one message per bad field."""

    def __init__(self, timezone: str, currency: str) -> None:
        super().__init__()
        self.timezone = timezone
        self.currency = currency

    def money(self, field: str, text: str) -> int | None:
        """'100', '1,200', 'NT$99.50' → minor units; empty → None."""
        cleaned = text.strip().replace(",", "").replace("NT$", "").replace("$", "").strip()
        if not cleaned:
            return None
        try:
            major = Decimal(cleaned)
        except InvalidOperation:
            major = Decimal(-1)
        exponent = major.as_tuple().exponent
        too_precise = isinstance(exponent, int) and -exponent > minor_digits(self.currency)
        if not major.is_finite() or major < 0 or too_precise:
            self.fail(field, MONEY_ERROR)
            return None
        minor = to_minor(major, self.currency)
        if minor > MAX_MINOR:
            self.fail(field, MONEY_ERROR)
            return None
        return minor

    def when(self, field: str, text: str) -> datetime | None:
        """A datetime-local value ('2026-12-01T10:00'), read in the brand's time zone."""
        cleaned = text.strip()
        if not cleaned:
            return None
        try:
            value = datetime.fromisoformat(cleaned)
        except ValueError:
            self.fail(field, WHEN_ERROR)
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(self.timezone))
        return value.astimezone(UTC)

    def basis_points(self, field: str, text: str) -> int:
        """'10' or '2.5' (percent) → 1000 or 250 basis points; at most 50%."""
        cleaned = text.strip().rstrip("%").strip()
        if not cleaned:
            return 0
        try:
            percent = Decimal(cleaned)
        except InvalidOperation:
            percent = Decimal(-1)
        points = percent * 100 if percent.is_finite() else Decimal(-1)  # NaN never compares
        if not 0 <= points <= 5000 or points != points.to_integral_value():
            self.fail(field, N_("Enter a share from 0 to 50%, like 10 or 2.5."))
            return 0
        return int(points)


def _parse(form: CampaignForm, timezone: str, currency: str) -> tuple[dict[str, Any],
                                                                      dict[str, str]]:
    """The form as a `CampaignCreate` body, and a message per form field that is wrong."""
    read = _Reader(timezone, currency)
    kind = form.kind
    body: dict[str, Any] = {
        "name": form.name, "description": form.description, "terms": form.terms,
        "kind": kind,
        "value_minor": None, "percent_off": None, "max_discount_minor": None,
        "free_sku": None, "gift_name": None, "voucher_price_minor": None,
    }
    # Only the fields of the chosen kind count: the others may still hold what was typed
    # before the kind was changed.
    if kind in (CampaignKind.amount_off, CampaignKind.voucher):
        body["value_minor"] = read.money("value", form.value)
    if kind == CampaignKind.voucher:
        body["voucher_price_minor"] = read.money("voucher_price", form.voucher_price)
    if kind == CampaignKind.percent_off:
        body["percent_off"] = read.whole("percent_off", form.percent_off, 1, 100,
                                         optional=True)
        body["max_discount_minor"] = read.money("max_discount", form.max_discount)
    if kind == CampaignKind.free_item:
        body["free_sku"] = form.free_sku.strip() or None
    if kind == CampaignKind.gift:
        body["gift_name"] = form.gift_name.strip() or None

    body["starts_at"] = read.when("starts_at", form.starts_at)
    if body["starts_at"] is None:
        read.fail("starts_at", WHEN_ERROR)
    body["ends_at"] = read.when("ends_at", form.ends_at)
    body["coupon_valid_days"] = body["coupon_valid_from"] = body["coupon_valid_until"] = None
    if form.validity == "days":
        body["coupon_valid_days"] = read.whole("coupon_valid_days", form.coupon_valid_days,
                                               1, 3650, optional=True)
        if body["coupon_valid_days"] is None:
            read.fail("coupon_valid_days", WHOLE_ERROR, low="1", high="3,650")
    elif form.validity == "dates":
        body["coupon_valid_from"] = read.when("coupon_valid_from", form.coupon_valid_from)
        body["coupon_valid_until"] = read.when("coupon_valid_until", form.coupon_valid_until)

    weekdays: list[int] = []
    for day in form.weekdays:
        if day.isdigit() and 0 <= int(day) <= 6:
            weekdays.append(int(day))
        else:
            read.fail("weekdays", FIELD_ERRORS["weekdays"])
    body.update({
        "store_ids": list(dict.fromkeys(form.store_ids)),
        "weekdays": sorted(set(weekdays)),
        "hours_start": form.hours_start.strip() or None,
        "hours_end": form.hours_end.strip() or None,
        "skus": list(dict.fromkeys(_split(form.skus))),
        "categories": list(dict.fromkeys(_split(form.categories))),
        "min_spend_minor": read.money("min_spend", form.min_spend) or 0,
        "per_customer_limit": read.whole("per_customer_limit", form.per_customer_limit,
                                         1, 1000, optional=True) or 1,
        "quota": read.whole("quota", form.quota, 1, 100_000_000, optional=True),
        "budget_minor": read.money("budget", form.budget),
        "stacking": form.stacking,
        "holdout_share_bp": read.basis_points("holdout_percent", form.holdout_percent),
        "claim_channels": list(dict.fromkeys(form.claim_channels)),
        "new_customers_only": form.new_customers_only,
        "code_mode": form.code_mode,
        # Codes compare case-insensitively and are stored upper-case (as the service does).
        "shared_code": (form.shared_code.strip().upper() or None
                        if form.code_mode == CodeMode.shared else None),
        "code_pattern": form.code_pattern.strip().upper(),
    })
    try:
        CampaignCreate.model_validate(body)
    except ValidationError as exc:
        found = field_errors(exc, FIELD_ERRORS, model_field="name")
        for field, message in found.items():
            read.errors.setdefault(FORM_FIELDS.get(field, field), message)
    return body, read.errors


def _form_of(campaign: Campaign, timezone: str, currency: str) -> CampaignForm:
    """A stored campaign as the form shows it for editing."""
    validity = ("days" if campaign.coupon_valid_days is not None else
                "dates" if campaign.coupon_valid_from or campaign.coupon_valid_until else
                "campaign")
    return CampaignForm(
        name=campaign.name, description=campaign.description, terms=campaign.terms,
        kind=campaign.kind.value, value=_money_text(campaign.value_minor, currency),
        percent_off=str(campaign.percent_off or ""),
        max_discount=_money_text(campaign.max_discount_minor, currency),
        free_sku=campaign.free_sku or "", gift_name=campaign.gift_name or "",
        voucher_price=_money_text(campaign.voucher_price_minor, currency),
        starts_at=_local_input(campaign.starts_at, timezone),
        ends_at=_local_input(campaign.ends_at, timezone), validity=validity,
        coupon_valid_days=str(campaign.coupon_valid_days or ""),
        coupon_valid_from=_local_input(campaign.coupon_valid_from, timezone),
        coupon_valid_until=_local_input(campaign.coupon_valid_until, timezone),
        store_ids=list(campaign.store_ids), weekdays=[str(d) for d in campaign.weekdays],
        hours_start=campaign.hours_start or "", hours_end=campaign.hours_end or "",
        skus=", ".join(campaign.skus), categories=", ".join(campaign.categories),
        min_spend=_money_text(campaign.min_spend_minor, currency) if campaign.min_spend_minor
        else "",
        per_customer_limit=str(campaign.per_customer_limit),
        quota=str(campaign.quota or ""), budget=_money_text(campaign.budget_minor, currency),
        stacking=campaign.stacking.value,
        holdout_percent=(format((Decimal(campaign.holdout_share_bp) / 100).normalize(), "f")
                         if campaign.holdout_share_bp else ""),
        claim_channels=list(campaign.claim_channels),
        new_customers_only=campaign.new_customers_only, code_mode=campaign.code_mode.value,
        shared_code=campaign.shared_code or "", code_pattern=campaign.code_pattern)


def _new_form(timezone: str) -> CampaignForm:
    """A blank form starting at the top of the current hour, local time: launched as it is,
    the campaign runs at once rather than waiting for a start nobody chose."""
    start = to_local(utcnow(), timezone).replace(minute=0, second=0, microsecond=0)
    return CampaignForm(starts_at=start.strftime("%Y-%m-%dT%H:%M"))


def _locked(campaign: Campaign | None) -> bool:
    """Once people hold coupons the offer itself cannot change (see `service.LOCKED_FIELDS`)."""
    return campaign is not None and (campaign.claimed_count > 0 or campaign.redeemed_count > 0)


def _keep_locked(form: CampaignForm, campaign: Campaign, timezone: str,
                 currency: str) -> CampaignForm:
    """The locked fields are shown disabled, so the browser does not send them: take the
    stored ones."""
    stored = _form_of(campaign, timezone, currency)
    kept = {name: getattr(stored, name) for name in
            ("kind", "value", "percent_off", "max_discount", "free_sku", "gift_name",
             "code_mode", "shared_code")}
    return form.model_copy(update=kept)


def _field_of(error: OmniloopError) -> str:
    field = error.field or "form"
    return FORM_FIELDS.get(field, field)


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, datetime) and isinstance(new, datetime):
        return as_utc(old) != as_utc(new)
    if isinstance(old, datetime) or isinstance(new, datetime):
        return True
    return bool(old != new)


# --- pages ----------------------------------------------------------------------------------

def _form_page(admin: AdminContext, session: Session, *, form: CampaignForm,
               errors: dict[str, str], campaign: Campaign | None,
               status_code: int = status.HTTP_200_OK) -> Response:
    stores = list_stores(session, admin.actor)
    known_channels = list(CHANNEL_LABELS)
    extra_channels = [c for c in form.claim_channels if c not in CHANNEL_LABELS]
    return render(admin.request, "admin/campaign_form.html", admin.template_values(
        "campaigns", form=form, errors=errors, campaign=campaign, stores=stores,
        kinds=list(CampaignKind), kind_labels=KIND_LABELS, stacking_labels=STACKING_LABELS,
        code_mode_labels=CODE_MODE_LABELS, channels=known_channels + extra_channels,
        channel_labels=CHANNEL_LABELS, weekday_labels=WEEKDAY_LABELS,
        locked=_locked(campaign)),
        status_code=status_code)


@dataclass(frozen=True)
class ListRow:
    campaign: Campaign
    status: CampaignStatus
    offer: str
    claimed: int
    redeemed: int


def _status_filter(value: str | None) -> CampaignStatus | None:
    try:
        return CampaignStatus(value) if value else None
    except ValueError:
        return None  # an unknown filter shows everything rather than an error page


@router.get("/campaigns")
def campaign_list(admin: Admin, session: SessionDep,
                  state: Annotated[str | None, Query(alias="status", max_length=20)] = None,
                  done: str | None = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    chosen = _status_filter(state)
    campaigns = service.list_campaigns(session, admin.actor, status=chosen)
    figures = reports.list_figures(session, admin.actor, [c.id for c in campaigns])
    now = utcnow()
    currency = admin.tenant.currency
    rows = [ListRow(campaign=c, status=current_status(c, now), offer=describe_value(c, currency),
                    claimed=figures[c.id].claimed, redeemed=figures[c.id].redeemed)
            for c in campaigns]
    return render(admin.request, "admin/campaigns.html", admin.template_values(
        "campaigns", rows=rows, chosen=chosen, statuses=list(CampaignStatus),
        status_labels=STATUS_LABELS, status_badges=STATUS_BADGES, kind_labels=KIND_LABELS,
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done)))


@router.get("/campaigns/new")
def campaign_new(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    return _form_page(admin, session, form=_new_form(admin.tenant.timezone), errors={},
                      campaign=None)


@router.post("/campaigns/new", dependencies=[CsrfChecked])
def campaign_create(admin: Admin, session: SessionDep,
                    form: Annotated[CampaignForm, Form()]) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    body, errors = _parse(form, admin.tenant.timezone, admin.tenant.currency)
    if errors:
        return _form_page(admin, session, form=form, errors=errors, campaign=None,
                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        campaign = service.create_campaign(session, admin.actor,
                                           CampaignCreate.model_validate(body))
    except (CampaignInvalid, SharedCodeTaken) as exc:
        field = "shared_code" if isinstance(exc, SharedCodeTaken) else _field_of(exc)
        return _form_page(admin, session, form=form, errors={field: refused(session, exc)},
                          campaign=None, status_code=exc.status)
    return redirect_done(f"/admin/campaigns/{campaign.id}", "campaign_created")


@router.get("/campaigns/{campaign_id}/edit")
def campaign_edit(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    campaign = service.get_campaign(session, admin.actor, campaign_id)
    form = _form_of(campaign, admin.tenant.timezone, admin.tenant.currency)
    return _form_page(admin, session, form=form, errors={}, campaign=campaign)


@router.post("/campaigns/{campaign_id}/edit", dependencies=[CsrfChecked])
def campaign_update(campaign_id: str, admin: Admin, session: SessionDep,
                    form: Annotated[CampaignForm, Form()]) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    campaign = service.get_campaign(session, admin.actor, campaign_id)
    timezone, currency = admin.tenant.timezone, admin.tenant.currency
    if _locked(campaign):
        form = _keep_locked(form, campaign, timezone, currency)
    body, errors = _parse(form, timezone, currency)
    if errors:
        return _form_page(admin, session, form=form, errors=errors, campaign=campaign,
                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    # Send only what changed: the audit entry then lists just that, and fields locked by
    # claims are never sent unchanged-but-reformatted.
    values = CampaignCreate.model_validate(body).model_dump()
    changes = {name: value for name, value in values.items()
               if _differs(getattr(campaign, name), value)}
    try:
        service.update_campaign(session, admin.actor, campaign.id,
                                CampaignUpdate.model_validate(changes))
    except (CampaignInvalid, CampaignLocked, SharedCodeTaken, CampaignStatusConflict) as exc:
        field = ("shared_code" if isinstance(exc, SharedCodeTaken) else
                 "form" if isinstance(exc, CampaignStatusConflict) else _field_of(exc))
        message = refused(session, exc)
        campaign = service.get_campaign(session, admin.actor, campaign_id)
        return _form_page(admin, session, form=form, errors={field: message},
                          campaign=campaign, status_code=exc.status)
    return redirect_done(f"/admin/campaigns/{campaign.id}", "campaign_saved")


# --- the campaign's page: settings, status buttons, claim link, report -------------------------

# The buttons each status (as of now) offers: (action path, label).
ACTIONS: dict[CampaignStatus, list[tuple[str, str]]] = {
    CampaignStatus.draft: [("launch", N_("Launch"))],
    CampaignStatus.scheduled: [("pause", N_("Pause")), ("end", N_("End"))],
    CampaignStatus.active: [("pause", N_("Pause")), ("end", N_("End"))],
    CampaignStatus.paused: [("launch", N_("Resume")), ("end", N_("End"))],
    CampaignStatus.ended: [],
}

CHART_WIDTH = 640
CHART_HEIGHT = 160


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    first: str
    last: str


def bar_chart(days: list[reports.DayRow]) -> Chart | None:
    """Redemptions per day as bar geometry for an inline SVG: drawn on the server, so the page
    needs no chart library, no JavaScript and no CDN. Labels stay in HTML around the SVG,
    where they keep a readable size when the chart shrinks on a phone."""
    if not days:
        return None
    peak = max(day.redeemed for day in days) or 1
    slot = CHART_WIDTH / len(days)
    gap = min(slot * 0.2, 6.0)
    bars = []
    for index, day in enumerate(days):
        height = round(day.redeemed / peak * (CHART_HEIGHT - 4), 2)
        bars.append(Bar(x=round(index * slot + gap / 2, 2), y=round(CHART_HEIGHT - height, 2),
                        width=round(max(slot - gap, 1.0), 2), height=height,
                        title=gettext("{day}: {count} redeemed").format(
                            day=day.day.isoformat(), count=day.redeemed)))
    return Chart(width=CHART_WIDTH, height=CHART_HEIGHT, bars=bars, peak=peak,
                 first=days[0].day.isoformat(), last=days[-1].day.isoformat())


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def claim_url(tenant_slug: str, campaign_id: str) -> str:
    """Where people claim the campaign's coupon (the consumer claim page)."""
    return f"{get_settings().base_url.rstrip('/')}/c/{tenant_slug}/claim/{campaign_id}"


def _detail_page(admin: AdminContext, session: Session, campaign: Campaign, *,
                 flash: str | None = None, flash_kind: str = "ok",
                 status_code: int = status.HTTP_200_OK) -> Response:
    report = reports.campaign_report(session, admin.actor, campaign.id)
    state = current_status(campaign, utcnow())
    visible = {s.id: s for s in list_stores(session, admin.actor)}
    url = claim_url(admin.tenant.slug, campaign.id)
    can_manage = admin.actor.can(Permission.campaigns_manage)
    return render(admin.request, "admin/campaign.html", admin.template_values(
        "campaigns", campaign=campaign, state=state, report=report,
        offer=describe_value(campaign, admin.tenant.currency),
        status_labels=STATUS_LABELS, status_badges=STATUS_BADGES, kind_labels=KIND_LABELS,
        stacking_labels=STACKING_LABELS, code_mode_labels=CODE_MODE_LABELS,
        channel_labels=CHANNEL_LABELS, weekday_labels=WEEKDAY_LABELS,
        campaign_stores=[visible[i] for i in campaign.store_ids if i in visible],
        hidden_stores=sum(1 for i in campaign.store_ids if i not in visible),
        actions=ACTIONS[state] if can_manage else [],
        can_edit=can_manage and state != CampaignStatus.ended,
        # segno's SVG of our own URL: markup to insert as it is, not text to escape.
        claim_url=url, claim_qr=Markup(qr_svg(url, scale=3)),
        chart=bar_chart(report.days), percent=_percent,
        flash=flash, flash_kind=flash_kind), status_code=status_code)


@router.get("/campaigns/{campaign_id}")
def campaign_page(campaign_id: str, admin: Admin, session: SessionDep,
                  done: str | None = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    campaign = service.get_campaign(session, admin.actor, campaign_id)
    return _detail_page(admin, session, campaign, flash=flash_message(done))


def _change_status(admin: AdminContext, session: Session, campaign_id: str,
                   action: str) -> Response:
    """Launch, pause or end; a refusal (already ended, end date passed…) shows on the page."""
    admin.actor.require(Permission.campaigns_manage)
    before = current_status(service.get_campaign(session, admin.actor, campaign_id), utcnow())
    try:
        if action == "launch":
            service.launch_campaign(session, admin.actor, campaign_id)
            done = ("campaign_resumed" if before == CampaignStatus.paused
                    else "campaign_launched")
        elif action == "pause":
            service.pause_campaign(session, admin.actor, campaign_id)
            done = "campaign_paused"
        else:
            service.end_campaign(session, admin.actor, campaign_id)
            done = "campaign_ended"
    except (CampaignStatusConflict, CampaignInvalid) as exc:
        message = refused(session, exc)
        campaign = service.get_campaign(session, admin.actor, campaign_id)
        return _detail_page(admin, session, campaign, flash=message, flash_kind="error",
                            status_code=exc.status)
    return redirect_done(f"/admin/campaigns/{campaign_id}", done)


@router.post("/campaigns/{campaign_id}/launch", dependencies=[CsrfChecked])
def campaign_launch(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    return _change_status(admin, session, campaign_id, "launch")


@router.post("/campaigns/{campaign_id}/pause", dependencies=[CsrfChecked])
def campaign_pause(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    return _change_status(admin, session, campaign_id, "pause")


@router.post("/campaigns/{campaign_id}/end", dependencies=[CsrfChecked])
def campaign_end(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    return _change_status(admin, session, campaign_id, "end")
