"""The consumer's campaign pages: claim a coupon, and the wallet that holds them.

`GET /c/<brand>/claim/<campaign>` is reached by a link or a QR code (LINE, SMS, e-mail, a
poster at the counter). The link's `channel` and UTM parameters (and `tp`, the touchpoint)
ride along as hidden fields, so the coupon records where the person came from even though
the claim itself is the next request. The person types a mobile number (LINE login later);
`claims.claim_coupon` finds or creates their profile, and the answer is a redirect to their
wallet with the new coupon highlighted. Claiming again what one already holds leads to the
same coupon: people tap twice, and links get opened again days later.

`GET /c/<brand>/wallet/<token>` opens with the signed link `claims.wallet_token`: every
coupon the person holds, usable ones first, each with a QR code the cashier scans (a signed
`core.tokens` token), its code in text, value, validity, the stores and the terms.

Choices worth knowing:

* The claim form is public, so its CSRF protection is a signed, timestamped token bound to
  the brand and campaign, not a session. A stale or forged one claims nothing; the form is
  shown again with a fresh token and the number kept, so a page left open in a chat for a
  day costs one more tap, not a dead end.
* A long-lived anonymous device id (`ol_device`, HttpOnly, SameSite=Lax) is set on the first
  visit and sent with the claim as an identity of kind `device`, so what that browser did
  before (events ingested with the device id) joins the profile. A device already tied to
  someone with *another* phone number (a shared family tablet, a shop's demo phone) is not
  sent: identify would merge the two people into one profile.
* Closed offers (draft, paused, not started, ended, all claimed, wrong channel) get a page
  that says so in words, never a traceback; a refusal rolls back whatever the claim wrote
  (a profile created for a number that then gets nothing is not kept).
* The pages carry secrets in their URLs (the wallet token): `Referrer-Policy: no-referrer`
  keeps them out of the map links' Referer headers, and search engines are told to stay out.
* The number is not verified yet (one-time SMS codes come with messaging): a number that
  already has a profile opens its full wallet only from a browser already tied to that
  profile. Elsewhere a new claim shows just that coupon, a repeated claim reveals nothing,
  and the browser is not tied to the profile (`device_trusted`).
* GET handlers never write to the database (see docs/architecture.md): the device cookie is
  only a cookie until a claim sends it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import phonenumbers
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from sqlalchemy import select

from omniloop.api.deps import SessionDep, client_ip
from omniloop.campaigns import claims
from omniloop.campaigns.errors import (
    CampaignEnded,
    CampaignNotActive,
    CampaignNotFound,
    CampaignNotStarted,
    ClaimChannelNotAllowed,
    ClaimLimitReached,
    ClaimsExhausted,
    CouponRefused,
    NewCustomersOnly,
    NoCodesLeft,
)
from omniloop.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
    Stacking,
)
from omniloop.campaigns.rules import (
    coupon_validity,
    current_status,
    describe_value,
    local_text,
    money,
    schedule_text,
)
from omniloop.campaigns.schemas import Attribution, ClaimIn
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import current_locale, gettext
from omniloop.core.qr import qr_svg
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.customers.errors import CustomerNotFound, InvalidIdentity
from omniloop.customers.identities import normalize_phone
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.customers.profiles import get_customer, profile_ids, survivor_ids
from omniloop.customers.schemas import IdentityIn
from omniloop.messaging import otp
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.errors import TenantNotFound
from omniloop.tenancy.models import Store, Tenant
from omniloop.tenancy.tenants import get_tenant_by_slug
from omniloop.web.templating import render

router = APIRouter(include_in_schema=False)

ACTOR_LABEL = "claim page"
DEVICE_COOKIE = "ol_device"
# Browsers cap cookie lifetimes at 400 days (RFC 6265bis); asking for more gains nothing.
DEVICE_MAX_AGE = 400 * 24 * 3600
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Long enough for a page left open while queueing at the counter or reading the terms.
FORM_MAX_AGE = 2 * 3600
_FORM_SALT = "omniloop.claim-form"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
# Query parameter → Attribution field. `tp` is short because it is printed in QR codes.
ATTRIBUTION_PARAMS: dict[str, str] = {
    "utm_source": "utm_source", "utm_medium": "utm_medium", "utm_campaign": "utm_campaign",
    "utm_content": "utm_content", "utm_term": "utm_term", "tp": "touchpoint"}
_SHORT = 64       # schemas.Short
_REFERRER = 255
# The wallet token is the page's only secret; keep it out of Referer headers and indexes.
_HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}

ALL_CLAIMED = N_("Sorry, all coupons of this offer have been claimed.")
CHANNEL_LABELS: dict[str, str] = {
    "line": N_("LINE"),
    "web": N_("the brand's website"),
    "email": N_("E-mail"),
    "sms": N_("SMS"),
    "qr": N_("a QR code in store"),
}


# --- request details -----------------------------------------------------------------------


def _channel(value: str | None) -> str:
    """The link's channel, or `web` for anything that is not a channel name."""
    text = (value or "").strip().lower()
    return text if _CHANNEL.fullmatch(text) else "web"


def _link_params(values: dict[str, str]) -> dict[str, str]:
    """The attribution parameters the link carried, trimmed to what the schema accepts."""
    found: dict[str, str] = {}
    for param in ATTRIBUTION_PARAMS:
        text = (values.get(param) or "").strip()[:_SHORT]
        if text:
            found[param] = text
    referrer = (values.get("ref") or "").strip()[:_REFERRER]
    if referrer:
        found["ref"] = referrer
    return found


def _attribution(params: dict[str, str]) -> Attribution | None:
    values: dict[str, Any] = {ATTRIBUTION_PARAMS[k]: v for k, v in params.items()
                              if k in ATTRIBUTION_PARAMS}
    if "ref" in params:
        values["referrer"] = params["ref"]
    return Attribution.model_validate(values) if values else None


def _device_id(request: Request) -> str | None:
    value = request.cookies.get(DEVICE_COOKIE)
    return value if value and _DEVICE_ID.fullmatch(value) else None


def _with_device_cookie(request: Request, response: Response) -> Response:
    """Give a browser its anonymous device id on its first visit; keep an existing one."""
    if _device_id(request) is None:
        response.set_cookie(DEVICE_COOKIE, secrets.token_urlsafe(18), max_age=DEVICE_MAX_AGE,
                            path="/", httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
    return response


def _signer() -> TimestampSigner:
    return TimestampSigner(get_settings().resolved_secret_key(), salt=_FORM_SALT)


def form_token(tenant_id: str, campaign_id: str) -> str:
    """The claim form's hidden token: proves the form came from this page, recently."""
    return _signer().sign(f"{tenant_id}:{campaign_id}").decode("ascii")


def form_token_ok(token: str, tenant_id: str, campaign_id: str) -> bool:
    try:
        value = _signer().unsign(token, max_age=FORM_MAX_AGE)
    except (SignatureExpired, BadSignature):
        return False
    return secrets.compare_digest(value, f"{tenant_id}:{campaign_id}".encode())


# --- what the pages show -------------------------------------------------------------------


def _unbreakable(text: str) -> str:
    """"2026-12-31 23:59" that a narrow screen never breaks at its hyphens or its space: a
    no-break space, and invisible word joiners around the hyphens."""
    return text.replace(" ", "\u00a0").replace("-", "\u2060-\u2060")


def when_text(value: datetime, timezone: str) -> str:
    """A moment in the brand's time zone, as the POS and admin show it (`rules.local_text`)."""
    return _unbreakable(local_text(value, timezone))


def until_text(value: datetime, timezone: str) -> str:
    """An exclusive end as people read it: a coupon that dies at midnight is valid until
    23:59 of the day before, not "until 2027-01-01 00:00"."""
    local = to_local(value, timezone)
    if local.hour == 0 and local.minute == 0:
        local -= timedelta(minutes=1)
    return _unbreakable(local.strftime("%Y-%m-%d %H:%M"))


@dataclass(frozen=True)
class StoreView:
    name: str
    address: str
    map_url: str | None


def map_url(store: Store) -> str | None:
    """Google Maps search by coordinates (exact) or else by address; none without either."""
    if store.latitude is not None and store.longitude is not None:
        query = f"{store.latitude},{store.longitude}"
    elif store.address:
        query = store.address
    else:
        return None
    return "https://www.google.com/maps/search/?" + urlencode({"api": "1", "query": query})


def _stores_by_id(session: Session, tenant_id: str) -> dict[str, Store]:
    return {s.id: s for s in session.scalars(select(Store).where(
        Store.tenant_id == tenant_id).order_by(Store.code))}


def stores_for(campaign: Campaign, stores: dict[str, Store]) -> list[StoreView]:
    """Where the coupon can be used: the campaign's stores, or every active store."""
    chosen = ([stores[i] for i in campaign.store_ids if i in stores] if campaign.store_ids
              else list(stores.values()))
    return [StoreView(name=s.name, address=s.address, map_url=map_url(s))
            for s in chosen if s.active]


def conditions(campaign: Campaign, currency: str) -> list[str]:
    """The rules a person must know before the counter, each in a few words."""
    found: list[str] = []
    if campaign.min_spend_minor > 0:
        found.append(gettext("Minimum spend {amount}").format(
            amount=money(campaign.min_spend_minor, currency)))
    if campaign.weekdays or (campaign.hours_start and campaign.hours_end):
        found.append(gettext("Only {schedule}").format(schedule=schedule_text(campaign)))
    if campaign.skus or campaign.categories:
        found.append(gettext("Selected items only"))
    if campaign.kind == CampaignKind.free_item and campaign.free_sku:
        found.append(gettext("With a purchase of {item}").format(item=campaign.free_sku))
    if campaign.new_customers_only:
        found.append(gettext("For first-time customers"))
    if campaign.stacking == Stacking.exclusive:
        found.append(gettext("Cannot be combined with other coupons"))
    return found


@dataclass(frozen=True)
class Offer:
    """A campaign as a person reads it, on the claim page and in the wallet."""

    name: str
    value: str
    description: str
    terms: str
    conditions: list[str]
    stores: list[StoreView]
    all_stores: bool


def offer_of(campaign: Campaign, tenant: Tenant, stores: dict[str, Store]) -> Offer:
    # Chinese sets no space before a full-width parenthesis ("15% 折扣（最高折抵 $200）");
    # describe_value joins its parts with an ASCII space for English.
    value = describe_value(campaign, tenant.currency).replace(" （", "（")
    return Offer(name=campaign.name, value=value,
                 description=campaign.description, terms=campaign.terms,
                 conditions=conditions(campaign, tenant.currency),
                 stores=stores_for(campaign, stores), all_stores=not campaign.store_ids)


def _validity_text(campaign: Campaign, tenant: Tenant, now: datetime) -> str:
    """What a claim made now would give, as the claim page promises it."""
    validity = coupon_validity(campaign, now)
    tz = tenant.timezone
    if campaign.coupon_valid_days is not None and validity.valid_until is not None and (
            campaign.ends_at is None
            or as_utc(validity.valid_until) < as_utc(campaign.ends_at)):
        return gettext("Use it within {days} days of claiming it.").format(
            days=campaign.coupon_valid_days)
    if as_utc(validity.valid_from) > now and validity.valid_until is not None:
        return gettext("Valid from {start} until {end}").format(
            start=when_text(validity.valid_from, tz), end=until_text(validity.valid_until, tz))
    if as_utc(validity.valid_from) > now:
        return gettext("Valid from {start}").format(start=when_text(validity.valid_from, tz))
    if validity.valid_until is not None:
        return gettext("Valid until {date}").format(date=until_text(validity.valid_until, tz))
    return gettext("No expiry date")


# --- page helpers --------------------------------------------------------------------------


def _page(request: Request, template: str, context: dict[str, Any],
          status_code: int = 200) -> Response:
    response = render(request, template, context, status_code=status_code)
    response.headers.update(_HEADERS)
    return _with_device_cookie(request, response)


def _not_found(request: Request, brand: str = "") -> Response:
    return _page(request, "consumer/message.html", {
        "brand": brand, "heading": gettext("Page not found"),
        "message": gettext("This link is not valid, or the offer is no longer here. Check "
                           "that you copied the whole link.")}, status_code=404)


def _tenant(session: Session, slug: str) -> Tenant | None:
    try:
        return get_tenant_by_slug(session, slug)
    except TenantNotFound:
        return None


def _actor(tenant: Tenant) -> Actor:
    return system_actor(tenant.id, ACTOR_LABEL)


def _campaign(session: Session, tenant: Tenant, campaign_id: str) -> Campaign | None:
    try:
        return get_campaign(session, _actor(tenant), campaign_id)
    except CampaignNotFound:
        return None


def _channels_text(channels: list[str]) -> str:
    return " / ".join(gettext(CHANNEL_LABELS[c]) if c in CHANNEL_LABELS else c
                      for c in channels)


def closed_reason(campaign: Campaign, tenant: Tenant, channel: str,
                  now: datetime) -> tuple[str, str] | None:
    """Why nobody can claim from this page now, as (state, message); None when open."""
    status = current_status(campaign, now)
    tz = tenant.timezone
    if status == CampaignStatus.scheduled:
        return "scheduled", gettext("This offer opens on {date}. Come back then!").format(
            date=when_text(campaign.starts_at, tz))
    if status == CampaignStatus.ended:
        ended = campaign.ends_at or campaign.updated_at
        return "ended", gettext("This offer ended on {date}. Thank you for your interest!"
                                ).format(date=when_text(ended, tz))
    if status == CampaignStatus.paused:
        return "paused", gettext("This offer is paused for now. Please try again later.")
    if status != CampaignStatus.active:
        return "draft", gettext("This offer is not open yet.")
    if campaign.quota is not None and campaign.claimed_count >= campaign.quota:
        return "exhausted", gettext(ALL_CLAIMED)
    if campaign.claim_channels and channel not in campaign.claim_channels:
        return "channel", gettext("This offer can be claimed only through {channels}.").format(
            channels=_channels_text(campaign.claim_channels))
    return None


def _claim_path(tenant: Tenant, campaign: Campaign) -> str:
    return f"/c/{tenant.slug}/claim/{campaign.id}"


def _claim_page(request: Request, session: Session, tenant: Tenant, campaign: Campaign, *,
                channel: str, params: dict[str, str], phone: str = "",
                errors: dict[str, str] | None = None, notice: str | None = None,
                closed: tuple[str, str] | None = None, wallet_url: str | None = None,
                verification_id: str | None = None, status_code: int = 200) -> Response:
    now = utcnow()
    if closed is None:
        closed = closed_reason(campaign, tenant, channel, now)
    if closed is not None and closed[0] == "draft":
        # Not released: show nothing of it, as for a campaign that does not exist.
        return _page(request, "consumer/message.html", {
            "brand": tenant.name, "heading": gettext("Offer not available"),
            "message": closed[1]}, status_code=404)
    return _page(request, "consumer/claim.html", {
        "brand": tenant.name, "offer": offer_of(campaign, tenant, _stores_by_id(session,
                                                                                 tenant.id)),
        "validity": _validity_text(campaign, tenant, now),
        "state": closed[0] if closed else "open", "closed_message": closed[1] if closed else "",
        "action": _claim_path(tenant, campaign), "channel": channel, "params": params,
        "form_token": form_token(tenant.id, campaign.id), "phone": phone,
        "errors": errors or {}, "notice": notice, "wallet_url": wallet_url,
        "verification_id": verification_id,
    }, status_code=status_code)


# --- claim ---------------------------------------------------------------------------------


@router.get("/c/{tenant_slug}/claim/{campaign_id}")
def claim_page(tenant_slug: str, campaign_id: str, request: Request,
               session: SessionDep) -> Response:
    tenant = _tenant(session, tenant_slug)
    campaign = _campaign(session, tenant, campaign_id) if tenant else None
    if tenant is None or campaign is None:
        return _not_found(request, tenant.name if tenant else "")
    query = dict(request.query_params)
    params = _link_params(query)
    referer = request.headers.get("referer", "")
    if referer and "ref" not in params and not referer.startswith(str(request.base_url)):
        params["ref"] = referer[:_REFERRER]
    return _claim_page(request, session, tenant, campaign, channel=_channel(query.get("channel")),
                       params=params)


def mobile_number(text: str) -> str | None:
    """The number in E.164 if it is a valid mobile number (TW by default), else None.

    Mobile only: the coupon is kept under this number, and later messages (SMS, a one-time
    code) can only reach a mobile.
    """
    try:
        e164 = normalize_phone(text)
    except InvalidIdentity:
        return None
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind not in (phonenumbers.PhoneNumberType.MOBILE,
                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return e164


def device_identity(session: Session, tenant_id: str, device_id: str | None,
                    phone: str) -> IdentityIn | None:
    """The browser's device id as an identity for this claim, unless it would merge people.

    A device whose profile already holds another phone number belongs to someone else (or is
    shared); sending it would make identify merge that person and this one.
    """
    if device_id is None:
        return None
    holder = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == IdentityKind.device,
        CustomerIdentity.value == device_id))
    if holder is not None:
        survivor = survivor_ids(session, tenant_id, [holder])[holder]
        phones = set(session.scalars(select(CustomerIdentity.value).where(
            CustomerIdentity.tenant_id == tenant_id,
            CustomerIdentity.customer_id.in_(profile_ids(session, tenant_id, survivor)),
            CustomerIdentity.kind == IdentityKind.phone)))
        if phones and phone not in phones:
            return None
    return IdentityIn(kind=IdentityKind.device, value=device_id)


def phone_holder(session: Session, tenant_id: str, phone: str) -> str | None:
    """The live profile that holds this number, if anyone does."""
    holder = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == IdentityKind.phone,
        CustomerIdentity.value == phone))
    if holder is None:
        return None
    return survivor_ids(session, tenant_id, [holder])[holder]


def device_trusted(session: Session, tenant_id: str, holder: str | None,
                   device_id: str | None) -> bool:
    """Whether this browser may see the wallet of the number typed into the form.

    The number is not verified (one-time SMS codes come with messaging), so typing someone
    else's number must not open their wallet or tie this browser to their profile. A number
    nobody holds yet is the typist's own; a known number is trusted only on a browser that
    already belongs to its profile (it claimed from here before).
    """
    if holder is None:
        return True
    if device_id is None:
        return False
    owner = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == IdentityKind.device,
        CustomerIdentity.value == device_id))
    return owner is not None and owner in profile_ids(session, tenant_id, holder)


def _refusal_message(error: CouponRefused) -> str:
    if isinstance(error, ClaimLimitReached):
        return gettext("You have already claimed this offer as many times as allowed.")
    if isinstance(error, NewCustomersOnly):
        return gettext("This offer is for first-time customers only.")
    if isinstance(error, ClaimsExhausted | NoCodesLeft):
        return gettext(ALL_CLAIMED)
    return error.localized()


FormText = Annotated[str, Form()]


@router.post("/c/{tenant_slug}/claim/{campaign_id}")
def claim(tenant_slug: str, campaign_id: str, request: Request, session: SessionDep,
          phone: FormText = "", form_token: FormText = "", channel: FormText = "web",
          utm_source: FormText = "", utm_medium: FormText = "", utm_campaign: FormText = "",
          utm_content: FormText = "", utm_term: FormText = "", tp: FormText = "",
          ref: FormText = "", verification_id: FormText = "", code: FormText = "") -> Response:
    tenant = _tenant(session, tenant_slug)
    campaign = _campaign(session, tenant, campaign_id) if tenant else None
    if tenant is None or campaign is None:
        return _not_found(request, tenant.name if tenant else "")
    channel = _channel(channel)
    params = _link_params({"utm_source": utm_source, "utm_medium": utm_medium,
                           "utm_campaign": utm_campaign, "utm_content": utm_content,
                           "utm_term": utm_term, "tp": tp, "ref": ref})
    phone = phone.strip()[:40]

    def again(status_code: int, **values: Any) -> Response:
        return _claim_page(request, session, tenant, campaign, channel=channel, params=params,
                           phone=phone, status_code=status_code, **values)

    if not form_token_ok(form_token, tenant.id, campaign.id):
        return again(400, notice=gettext(
            "This page was open for a long time or could not be checked, so nothing was "
            "claimed yet. Please tap the button again."))
    closed = closed_reason(campaign, tenant, channel, utcnow())
    # All claimed: those who hold one may still come back to it (claim_coupon returns the
    # held coupon before it looks at the quota); everyone else hears "all claimed".
    if closed is not None and closed[0] != "exhausted":
        return again(200, closed=closed)
    if not phone:
        return again(422, errors={"phone": gettext("Enter your mobile number.")})
    e164 = mobile_number(phone)
    if e164 is None:
        return again(422, errors={"phone": gettext(
            "This is not a mobile number we can use. Check it, e.g. 0912 345 678.")})
    # Phone verification (messaging.otp), when the brand asks for it: a code by SMS first.
    gate = otp.gate(session, tenant, e164, client_ip(request), verification_id, code)
    if not gate.passed:
        return again(gate.status, verification_id=gate.verification_id,
                     errors={"code": gettext(gate.error)} if gate.error else None)
    identities = [IdentityIn(kind=IdentityKind.phone, value=e164)]
    holder = phone_holder(session, tenant.id, e164)
    # A verified code proves the phone as well as a browser tied to it does.
    trusted = (gate.verification_id is not None
               or device_trusted(session, tenant.id, holder, _device_id(request)))
    device = device_identity(session, tenant.id, _device_id(request), e164) if trusted else None
    if device is not None:
        identities.append(device)
    data = ClaimIn(identities=identities, channel=channel, attribution=_attribution(params))
    try:
        result = claims.claim_coupon(session, _actor(tenant), campaign.id, data)
    except CouponRefused as error:
        session.rollback()  # keep nothing of a claim that gave nothing
        if isinstance(error, CampaignNotStarted | CampaignEnded | CampaignNotActive
                      | ClaimChannelNotAllowed):
            return again(200)  # closed meanwhile: the page says how, as on a fresh visit
        wallet = (claims.wallet_path(session, tenant.id, holder)
                  if isinstance(error, ClaimLimitReached) and holder and trusted else None)
        return again(409, closed=("refused", _refusal_message(error)), wallet_url=wallet)
    if not trusted and not result.created:
        session.rollback()
        return again(409, closed=("refused", gettext(
            "This number already holds this offer. Open it from the phone it was claimed "
            "on.")))
    wallet = claims.wallet_path(session, tenant.id, result.customer.id,
                                None if trusted else result.coupon.id)
    mark = "added" if result.created else "held"
    query = {mark: result.coupon.id}
    if current_locale.get() == "en":
        query["lang"] = "en"  # the page's language, even where the cookie was refused
    # The fragment scrolls to the coupon among many; the mark says "added" or "held".
    response = RedirectResponse(f"{wallet}?{urlencode(query)}#coupon-{result.coupon.id}",
                                status_code=303)
    response.headers.update(_HEADERS)
    return _with_device_cookie(request, response)


# --- wallet --------------------------------------------------------------------------------


ALREADY_USED = N_("Already used")
# Order in the wallet: what can be used now comes first.
STATE_ORDER = ("usable", "upcoming", "paused", "redeemed", "expired", "cancelled")
STATE_LABELS: dict[str, str] = {
    "usable": N_("Ready to use"),
    "upcoming": N_("Not yet valid"),
    "paused": N_("On hold"),
    "redeemed": ALREADY_USED,
    "expired": N_("Expired"),
    "cancelled": N_("Cancelled"),
}


@dataclass
class WalletCoupon:
    id: str
    state: str
    label: str
    offer: Offer
    code: str | None
    status_line: str
    qr: str | None = None
    highlight: str | None = None
    extra: list[str] = field(default_factory=list)


def _coupon_state(coupon: Coupon, campaign: Campaign, tenant: Tenant,
                  redemption: Redemption | None, stores: dict[str, Store],
                  now: datetime) -> tuple[str, str]:
    """The coupon's state and the sentence that explains it (when, where)."""
    tz = tenant.timezone
    if coupon.status == CouponStatus.redeemed:
        when = (redemption.redeemed_at if redemption else coupon.redeemed_at)
        store = stores.get(redemption.store_id) if redemption else None
        if when is not None and store is not None:
            return "redeemed", gettext("Used on {time} at {store}").format(
                time=when_text(when, tz), store=store.name)
        if when is not None:
            return "redeemed", gettext("Used on {time}").format(time=when_text(when, tz))
        return "redeemed", gettext(ALREADY_USED)
    if coupon.status == CouponStatus.cancelled:
        return "cancelled", gettext("This coupon has been cancelled.")
    status = current_status(campaign, now)
    valid_until = as_utc(coupon.valid_until) if coupon.valid_until else None
    if status == CampaignStatus.ended:
        end = as_utc(campaign.ends_at) if campaign.ends_at else now
        valid_until = end if valid_until is None else min(valid_until, end)
    if valid_until is not None and now >= valid_until:
        return "expired", gettext("Expired on {date}").format(date=until_text(valid_until, tz))
    if status == CampaignStatus.ended:
        return "expired", gettext("This offer has ended.")
    starts = [as_utc(coupon.valid_from)] if coupon.valid_from else []
    if status == CampaignStatus.scheduled:
        starts.append(as_utc(campaign.starts_at))
    start = max(starts) if starts else None
    if start is not None and now < start:
        return "upcoming", gettext("Can be used from {date}").format(date=when_text(start, tz))
    if status != CampaignStatus.active:
        return "paused", gettext("The brand has put this offer on hold for now. Your coupon "
                                 "stays in your wallet.")
    if valid_until is None:
        return "usable", gettext("No expiry date")
    return "usable", gettext("Valid until {date}").format(date=until_text(valid_until, tz))


def wallet_items(session: Session, tenant: Tenant, customer_id: str, *,
                 highlight: dict[str, str], now: datetime | None = None) -> list[WalletCoupon]:
    """The person's coupons as the wallet shows them: usable first, newest first within."""
    now = now or utcnow()
    coupons = claims.wallet_coupons(session, tenant.id, customer_id)
    if not coupons:
        return []
    campaign_ids = {c.campaign_id for c in coupons}
    campaigns = {c.id: c for c in session.scalars(select(Campaign).where(
        Campaign.tenant_id == tenant.id, Campaign.id.in_(campaign_ids)))}
    redemption_ids = [c.redemption_id for c in coupons if c.redemption_id]
    redemptions = {r.id: r for r in session.scalars(select(Redemption).where(
        Redemption.tenant_id == tenant.id, Redemption.id.in_(redemption_ids),
        Redemption.status == RedemptionStatus.redeemed))} if redemption_ids else {}
    stores = _stores_by_id(session, tenant.id)
    offers: dict[str, Offer] = {}
    items: list[WalletCoupon] = []
    for coupon in coupons:
        campaign = campaigns[coupon.campaign_id]
        if campaign.id not in offers:
            offers[campaign.id] = offer_of(campaign, tenant, stores)
        redemption = redemptions.get(coupon.redemption_id or "")
        state, line = _coupon_state(coupon, campaign, tenant, redemption, stores, now)
        item = WalletCoupon(id=coupon.id, state=state, label=gettext(STATE_LABELS[state]),
                            offer=offers[campaign.id], code=coupon.code or campaign.shared_code,
                            status_line=line)
        if state == "usable":
            token = sign_token(tenant.id, TokenKind.COUPON, coupon.id,
                               claims.token_expiry(coupon))
            item.qr = qr_svg(token, scale=5, css_class="qr")
        for mark, coupon_id in highlight.items():
            if coupon_id == coupon.id:
                item.highlight = mark
        items.append(item)
    items.sort(key=lambda i: STATE_ORDER.index(i.state))  # stable: newest first within
    return items


# What other modules add to the full wallet (loyalty: the member card), by name. A loader gets
# the brand, the person and the wallet token, and returns its template context or None.
# Only the full wallet shows them: a single-coupon link proves nothing about who holds it.
WalletExtra = Callable[[Session, Tenant, str, str], Any]
_wallet_extras: dict[str, WalletExtra] = {}


def register_wallet_extra(name: str, loader: WalletExtra) -> None:
    _wallet_extras[name] = loader


@router.get("/c/{tenant_slug}/wallet/{token}")
def wallet(tenant_slug: str, token: str, request: Request, session: SessionDep) -> Response:
    tenant = _tenant(session, tenant_slug)
    if tenant is None:
        return _not_found(request)
    try:
        access = claims.wallet_access(token, tenant.id)
        customer = get_customer(session, _actor(tenant), access.customer_id)
    except CustomerNotFound:
        return _not_found(request, tenant.name)
    if customer.erased_at is not None:
        return _not_found(request, tenant.name)
    highlight = {mark: request.query_params[mark] for mark in ("added", "held")
                 if mark in request.query_params}
    items = wallet_items(session, tenant, customer.id, highlight=highlight)
    extras: dict[str, Any] = {}
    if access.only_coupon_id is not None:
        items = [item for item in items if item.id == access.only_coupon_id]
    else:
        extras = {name: loader(session, tenant, customer.id, token)
                  for name, loader in _wallet_extras.items()}
    return _page(request, "consumer/wallet.html", {
        "brand": tenant.name, "items": items, "extras": extras,
        "usable": sum(1 for i in items if i.state == "usable")})
