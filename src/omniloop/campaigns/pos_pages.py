"""The cashier's page, /pos: scan or type a coupon, confirm it, see it redeemed, void it.

Plain server-rendered forms and no JavaScript, on purpose: a keyboard-wedge scanner "types"
the code and presses Enter, which submits the form exactly as a person typing would, so any
scanner and any tablet browser at the counter works. Every decision is the service's
(`campaigns.redemption`); this module reads the forms, knows which store the counter is, and
shapes the screens.

* GET /pos: the big input, the basket total, today's redemptions at this store.
* POST /pos/check: the offer, the customer, the discount and what to pay. Nothing changes.
* POST /pos/redeem: redeems under the idempotency key made when the confirm screen was
  rendered, so a double tap or a resent POST redeems once; then redirects (post/redirect/get)
  to GET /pos/redemptions/{id}, the success screen, which a reload only reads.
* POST /pos/redemptions/{id}/void: within the void window, with a reason.
* GET/POST /pos/store: which store this counter is, for staff who work in several.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from babel.numbers import get_currency_symbol
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from omniloop.api.deps import SessionDep, client_ip
from omniloop.campaigns.errors import RedemptionNotFound
from omniloop.campaigns.guessing import guarded_lookup
from omniloop.campaigns.models import Campaign, Redemption, RedemptionStatus
from omniloop.campaigns.redemption import Evaluation, evaluate, redeem, void_redemption
from omniloop.campaigns.rules import describe_value
from omniloop.campaigns.schemas import MAX_MINOR, PosCheckIn, RedeemIn
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.core.money import to_major, to_minor
from omniloop.core.ratelimit import RateLimited
from omniloop.core.security import random_token
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenExpired, TokenKind, looks_like_token, verify_token
from omniloop.customers.identities import mask_phone
from omniloop.customers.models import Customer, IdentityKind
from omniloop.customers.pages import CustomerFlag, flags_of
from omniloop.customers.profiles import identities_of
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.errors import StoreNotFound
from omniloop.tenancy.models import Store
from omniloop.tenancy.stores import get_store, list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, refused, register_flash
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/pos", include_in_schema=False)

register(NavItem("pos", N_("POS"), "/pos", Permission.pos_use, 50))
register_flash("pos_voided", N_("The redemption was voided: the coupon can be used again."))

# The counter's store, per device rather than per sign-in: a tablet stays in its store while
# cashiers sign in and out. Not secret, and checked against the actor on every request.
STORE_COOKIE = "omniloop_pos_store"
STORE_COOKIE_AGE = 365 * 24 * 3600
RECENT_LIMIT = 30

TOTAL_MISSING = N_("Enter the basket total, then press Enter again.")
TOTAL_INVALID = N_("Enter the basket total as an amount, such as 350 or 1,280.")
CODE_MISSING = N_("Scan or type a coupon code.")
CODE_MALFORMED = N_("That is neither a coupon code nor a coupon QR code.")
REASON_MISSING = N_("Give a reason for the void.")
NO_STORE = N_("You are not assigned to a store yet. Ask the brand owner to add you to one.")

# Beyond what any code or QR token needs (a token is 173 characters); the page itself refuses
# what the service would not accept, with a message rather than a bare 422.
FormCode = Annotated[str, Form(max_length=1000)]
Form64 = Annotated[str, Form(max_length=64)]


class BadInput(Exception):
    """A form value the page itself refuses, before any service is asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the counter: who, which store --------------------------------------------------------

@dataclass(frozen=True)
class Counter:
    admin: AdminContext
    store: Store
    can_switch: bool

    def values(self, **extra: Any) -> dict[str, Any]:
        return self.admin.template_values(
            "pos", store=self.store, can_switch=self.can_switch,
            currency_symbol=currency_symbol(self.admin.tenant.currency), **extra)


def currency_symbol(currency: str) -> str:
    """"NT$" for TWD: the English symbol, because the zh-TW one is a bare "$"."""
    return str(get_currency_symbol(currency, locale="en"))


def _usable(store: Store | None) -> Store | None:
    return store if store is not None and store.active else None


def counter_for(request: Request, admin: AdminContext, session: Session) -> Counter | None:
    """The store this counter serves: the only one the staff member works in, else the one
    picked on this device (if they may still use it). None: a store must be picked."""
    actor = admin.actor
    actor.require(Permission.pos_use)
    can_switch = actor.store_ids is None or len(actor.store_ids) > 1
    store: Store | None = None
    if actor.store_ids is not None and len(actor.store_ids) == 1:
        store = _usable(_store_or_none(session, actor, next(iter(actor.store_ids))))
    else:
        chosen = request.cookies.get(STORE_COOKIE)
        if chosen:
            store = _usable(_store_or_none(session, actor, chosen[:40]))
    return Counter(admin, store, can_switch) if store is not None else None


def _store_or_none(session: Session, actor: Actor, store_id: str) -> Store | None:
    try:
        return get_store(session, actor, store_id)
    except StoreNotFound:
        return None


def pick_store() -> RedirectResponse:
    return RedirectResponse("/pos/store", status_code=303)


# --- reading the forms ----------------------------------------------------------------------

def parse_total(text: str, currency: str) -> int:
    """The basket total typed in major units ("350", "1,280", "NT$ 99.5", full-width digits
    from a Chinese IME) → minor units. Raises BadInput with the message to show."""
    cleaned = unicodedata.normalize("NFKC", text)
    for noise in (",", " ", currency_symbol(currency), "NT$", "$", "元"):
        cleaned = cleaned.replace(noise, "")
    if not cleaned:
        raise BadInput(gettext(TOTAL_MISSING))
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise BadInput(gettext(TOTAL_INVALID)) from None
    if not value.is_finite() or value < 0 or value > to_major(MAX_MINOR, currency):
        raise BadInput(gettext(TOTAL_INVALID))
    return to_minor(value, currency)


def total_text(minor: int, currency: str) -> str:
    """Minor units back to what the cashier typed: 35000 → "350", 9950 → "99.5"."""
    major = to_major(minor, currency)
    return str(major.quantize(Decimal(1)) if major == major.to_integral_value()
               else major.normalize())


def parse_minor(text: str) -> int:
    """The total carried in the confirm form as minor units: a plain non-negative integer."""
    if not text.isdigit() or int(text) > MAX_MINOR:
        raise BadInput(gettext(TOTAL_INVALID))
    return int(text)


MEMBER_SCAN_PATH = "/pos/member/scan"


def is_member_card(code: str, tenant_id: str) -> bool:
    """A genuine member QR of this brand, old or not (the member panel says "expired")."""
    if not looks_like_token(code):
        return False
    try:
        verify_token(code, tenant_id=tenant_id, kind=TokenKind.MEMBER)
    except TokenExpired:
        return True
    except OmniloopError:
        return False
    return True


def _check_body(code: str, store: Store, total_minor: int) -> PosCheckIn:
    presented = code.strip()
    if not presented:
        raise BadInput(gettext(CODE_MISSING))
    try:
        return PosCheckIn(code=presented, store_code=store.code, basket_total_minor=total_minor)
    except ValidationError:
        raise BadInput(gettext(CODE_MALFORMED)) from None


# --- what the screens show ------------------------------------------------------------------

@dataclass(frozen=True)
class CustomerView:
    name: str | None
    phone: str | None
    flags: list[CustomerFlag]  # risk badges (loyalty: blacklisted, high risk, watch)


def customer_view(session: Session, actor: Actor, customer_id: str | None) -> CustomerView | None:
    """The coupon's owner, so the cashier can ask "Ms Lin?": name and a masked phone only."""
    if customer_id is None or not actor.can(Permission.customers_read):
        return None
    customer = session.get(Customer, (actor.tenant_id, customer_id))
    if customer is None or customer.erased_at is not None:
        return None
    phones = [i.value for i in identities_of(session, actor.tenant_id, customer.id)
              if i.kind == IdentityKind.phone]
    return CustomerView(name=customer.name, phone=mask_phone(phones[0]) if phones else None,
                        flags=flags_of(session, actor, [customer.id]).get(customer.id, []))


def shown_code(presented: str, code: str | None) -> str:
    """The code to print on screen: the coupon's own code, or a scanned token shortened."""
    if code:
        return code
    text = presented.strip()
    return text[:12] + "…" if looks_like_token(text) else text


def void_deadline(redemption: Redemption) -> datetime:
    """Until when the Void button shows; `void_redemption` enforces the same window."""
    return as_utc(redemption.redeemed_at) + timedelta(
        minutes=get_settings().redemption_void_minutes)


def voidable(redemption: Redemption, now: datetime) -> bool:
    return redemption.status == RedemptionStatus.redeemed and now <= void_deadline(redemption)


@dataclass(frozen=True)
class RecentRow:
    redemption: Redemption
    campaign_name: str
    voidable: bool
    void_until: datetime


def recent_at(session: Session, actor: Actor, store: Store, timezone: str,
              now: datetime) -> list[RecentRow]:
    """Today's redemptions at this store (the brand's local day), newest first."""
    midnight = to_local(now, timezone).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = session.execute(
        select(Redemption, Campaign.name).join(
            Campaign, (Campaign.tenant_id == Redemption.tenant_id)
            & (Campaign.id == Redemption.campaign_id))
        .where(Redemption.tenant_id == actor.tenant_id, Redemption.store_id == store.id,
               Redemption.redeemed_at >= as_utc(midnight))
        .order_by(Redemption.redeemed_at.desc(), Redemption.id.desc())
        .limit(RECENT_LIMIT)).all()
    return [RecentRow(r, name, voidable(r, now), void_deadline(r)) for r, name in rows]


def _scan_page(counter: Counter, session: Session, *, total: str = "",
               error: OmniloopError | str | None = None, presented: str = "",
               code_value: str = "", focus: str = "code", flash: str | None = None,
               status_code: int = 200) -> Response:
    """The scan screen; after a refusal, with the red panel and the input empty and ready
    for the next scan (the basket total stays, it is still the same basket)."""
    code, message = None, None
    if isinstance(error, OmniloopError):
        code, message = error.code, refused(session, error)
    elif error is not None:
        code, message = "invalid_input", error
        session.rollback()
    tenant = counter.admin.tenant
    recent = recent_at(session, counter.admin.actor, counter.store, tenant.timezone, utcnow())
    response = render(counter.admin.request, "pos/scan.html", counter.values(
        total=total, error_code=code, error_message=message,
        rejected=shown_code(presented, None) if presented else "", code_value=code_value,
        focus=focus, recent=recent, flash=flash), status_code=status_code)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _load_redemption(session: Session, actor: Actor, redemption_id: str) -> Redemption:
    """A redemption at a store the actor works in; any other is "not found", as in the
    services, so ids leak nothing."""
    redemption = session.get(Redemption, (actor.tenant_id, redemption_id[:40]))
    if redemption is None or not actor.sees_store(redemption.store_id):
        raise RedemptionNotFound()
    return redemption


def _receipt(counter: Counter, session: Session, redemption: Redemption, *,
             error: OmniloopError | str | None = None, flash: str | None = None,
             status_code: int = 200) -> Response:
    message = None
    if isinstance(error, OmniloopError):
        message = refused(session, error)
        session.refresh(redemption)
    elif error is not None:
        message = error
    actor = counter.admin.actor
    campaign = session.get(Campaign, (actor.tenant_id, redemption.campaign_id))
    store = session.get(Store, (actor.tenant_id, redemption.store_id))
    currency = counter.admin.tenant.currency
    voided = redemption.status == RedemptionStatus.voided
    return render(counter.admin.request, "pos/done.html", counter.values(
        redemption=redemption, voided=voided,
        campaign=campaign, redeemed_store=store,
        offer=describe_value(campaign, currency) if campaign else "",
        # A voided coupon no longer takes anything off: the whole basket is to pay.
        to_pay=redemption.basket_total_minor - (0 if voided else redemption.discount_minor),
        customer=customer_view(session, actor, redemption.customer_id),
        can_void=voidable(redemption, utcnow()), void_until=void_deadline(redemption),
        error_message=message, flash=flash), status_code=status_code)


# --- routes -----------------------------------------------------------------------------

@router.get("")
def scan(request: Request, admin: Admin, session: SessionDep, total: str = "",
         done: str | None = None) -> Response:
    """The scan screen. `total` refills the basket total after Cancel on the confirm screen:
    the customer is still at the counter with the same basket."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    return _scan_page(counter, session, total=total[:32], flash=flash_message(done))


@router.get("/store")
def store_form(admin: Admin, session: SessionDep) -> Response:
    """One big button per store the staff member may serve; the current one marked."""
    admin.actor.require(Permission.pos_use)
    stores = list_stores(session, admin.actor, include_inactive=False)
    current = admin.request.cookies.get(STORE_COOKIE)
    return render(admin.request, "pos/stores.html", admin.template_values(
        "pos", stores=stores, current=current, no_store=gettext(NO_STORE)))


@router.post("/store", dependencies=[CsrfChecked])
def choose_store(admin: Admin, session: SessionDep, store_id: Form64 = "") -> Response:
    """Remember the store on this device. A store the actor cannot see is not found."""
    admin.actor.require(Permission.pos_use)
    store = get_store(session, admin.actor, store_id)
    if not store.active:
        raise StoreNotFound()
    response = RedirectResponse("/pos", status_code=303)
    response.set_cookie(STORE_COOKIE, store.id, max_age=STORE_COOKIE_AGE, path="/pos",
                        httponly=True, samesite="lax")
    return response


@router.post("/check", dependencies=[CsrfChecked])
def check(request: Request, admin: Admin, session: SessionDep, code: FormCode = "",
          total: Form64 = "") -> Response:
    """The confirm screen, or the scan screen with the precise reason it cannot be used.

    A member card scanned into this box goes on to the member panel (a 307 keeps the POST
    and its fields): the cashier need not know which box takes which QR code."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    tenant = admin.tenant
    if is_member_card(code, tenant.id):
        return RedirectResponse(MEMBER_SCAN_PATH, status_code=307)
    try:
        total_minor = parse_total(total, tenant.currency)
    except BadInput as bad:
        # Keep the scanned code: typing the total and pressing Enter then checks it.
        return _scan_page(counter, session, total=total, error=bad.message,
                          code_value=code.strip()[:400], focus="total", status_code=422)
    try:
        body = _check_body(code, counter.store, total_minor)
        with guarded_lookup(admin.actor, client_ip(request)):
            evaluation = evaluate(session, admin.actor, body)
    except BadInput as bad:
        return _scan_page(counter, session, total=total, error=bad.message, status_code=422)
    except OmniloopError as error:
        return _scan_page(counter, session, total=total, error=error, presented=code,
                          status_code=error.status)
    return _confirm_page(counter, session, body, evaluation)


def _confirm_page(counter: Counter, session: Session, body: PosCheckIn,
                  evaluation: Evaluation) -> Response:
    target = evaluation.target
    currency = evaluation.tenant.currency
    return render(counter.admin.request, "pos/confirm.html", counter.values(
        presented=body.code, code=shown_code(body.code, target.code),
        campaign=target.campaign, offer=describe_value(target.campaign, currency),
        customer=customer_view(session, counter.admin.actor, evaluation.customer_id),
        total_minor=body.basket_total_minor, discount=evaluation.discount_minor,
        to_pay=body.basket_total_minor - evaluation.discount_minor,
        total=total_text(body.basket_total_minor, currency),
        valid_until=evaluation.valid_until,
        # Made now, sent back with Confirm: every resend of this form is the same attempt.
        idempotency_key="pos-" + random_token(18)))


@router.post("/redeem", dependencies=[CsrfChecked])
def redeem_page(request: Request, admin: Admin, session: SessionDep, code: FormCode = "",
                total_minor: Form64 = "", key: Form64 = "") -> Response:
    """Redeem once, then show the success screen through a redirect, so that a reload
    only reads it; a second submit of the same confirm form replays the first result."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    total = ""
    try:
        minor = parse_minor(total_minor)
        total = total_text(minor, admin.tenant.currency)
        check_body = _check_body(code, counter.store, minor)
        body = RedeemIn(**check_body.model_dump())
        with guarded_lookup(admin.actor, client_ip(request)):
            result = redeem(session, admin.actor, body, key)
    except BadInput as bad:
        return _scan_page(counter, session, total=total, error=bad.message, status_code=422)
    except OmniloopError as error:
        return _scan_page(counter, session, total=total, error=error, presented=code,
                          status_code=error.status)
    return RedirectResponse(f"/pos/redemptions/{result.redemption.id}", status_code=303)


@router.get("/redemptions/{redemption_id}")
def receipt(redemption_id: str, request: Request, admin: Admin, session: SessionDep,
            done: str | None = None) -> Response:
    """The success screen (or, once voided, the voided one): only reads, so reloading it
    or coming back to it later never redeems anything."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    redemption = _load_redemption(session, admin.actor, redemption_id)
    return _receipt(counter, session, redemption, flash=flash_message(done))


@router.post("/redemptions/{redemption_id}/void", dependencies=[CsrfChecked])
def void(redemption_id: str, request: Request, admin: Admin, session: SessionDep,
         reason: Annotated[str, Form(max_length=255)] = "",
         back: Form64 = "") -> Response:
    """Void within the window, then back to where the cashier was: the success screen or
    the scan screen's list of today's redemptions."""
    counter = counter_for(request, admin, session)
    if counter is None:
        return pick_store()
    redemption = _load_redemption(session, admin.actor, redemption_id)
    if not reason.strip():
        return _receipt(counter, session, redemption, error=gettext(REASON_MISSING),
                        status_code=422)
    try:
        void_redemption(session, admin.actor, redemption.id, reason.strip())
    except OmniloopError as error:
        return _receipt(counter, session, redemption, error=error, status_code=error.status)
    if back == "list":
        return RedirectResponse("/pos?done=pos_voided", status_code=303)
    return RedirectResponse(f"/pos/redemptions/{redemption.id}?done=pos_voided",
                            status_code=303)
