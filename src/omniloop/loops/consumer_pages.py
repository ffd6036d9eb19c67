"""The phone pages of the loop: `/t/<code>` (a touchpoint), `/r/<code>` (a short link) and
`/c/<brand>/ref/<code>` (a friend's invitation).

`GET /t/<code>` must answer fast and must not write (docs/architecture.md: GET handlers do
not write): the touchpoint comes from memory (`lookup`), and the scan goes to the recorder,
which writes it a moment later in a batch. A first-time browser gets its anonymous device id
cookie (`ol_device`, the claim page's) in this very answer, and the scan is recorded with
it, so when the person identifies a minute later the scan joins their profile.

Then, by purpose: `url` and `claim` redirect at once (claims go to the campaigns claim page,
which has its own phone form and rules, with `channel=qr&tp=<code>`); the others show what
the code is for, the incentive and its disclosure, and a phone form. The POST identifies the
person (visitors.identify_visitor: the claim page's device-trust rules), does the action
(feedback, join, …), gives the reward once, and redirects to the "done" page: thanks, the
reward, the review invitation (for every respondent, whatever the score), the member's
referral link and QR, and the LINE button where the brand set one.

Unknown or disabled codes get a page that says so in words (404), never a traceback.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from omniloop.api.deps import SessionDep, client_ip
from omniloop.campaigns import claims
from omniloop.campaigns.consumer_pages import (
    DEVICE_COOKIE,
    DEVICE_MAX_AGE,
    form_token,
    form_token_ok,
    mobile_number,
    offer_of,
)
from omniloop.campaigns.models import Campaign, Coupon
from omniloop.core.clock import utcnow
from omniloop.core.db import Session, get_database
from omniloop.core.errors import OmniloopError
from omniloop.core.errors_http import handled_error
from omniloop.core.i18n import current_locale, gettext, html_lang
from omniloop.core.qr import qr_svg
from omniloop.core.ratelimit import RateLimited, enforce
from omniloop.core.settings import get_settings
from omniloop.core.threads import in_thread
from omniloop.customers.events import record_event
from omniloop.loops import lookup
from omniloop.loops.errors import ReceiptExpired, ReceiptRefused
from omniloop.loops.feedback import receipt_from_token, submit_feedback
from omniloop.loops.links import is_bot, with_utm
from omniloop.loops.lookup import TouchpointView
from omniloop.loops.models import LoopProgram, Purpose, Receipt, ReferralCode, Touchpoint
from omniloop.loops.recorder import Hit, recorder
from omniloop.loops.referrals import code_for, refer, referrer_of
from omniloop.loops.touchpoints import PURPOSE_LABELS
from omniloop.loops.visitors import (
    Reward,
    Visitor,
    give_reward,
    identify_visitor,
    visitor_from_token,
    visitor_token,
)
from omniloop.messaging import otp
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.errors import TenantNotFound
from omniloop.tenancy.models import Tenant
from omniloop.tenancy.tenants import get_tenant, get_tenant_by_slug
from omniloop.web.templating import render

router = APIRouter(include_in_schema=False)

ACTOR_LABEL = "touchpoint page"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
FormText = Annotated[str, Form()]


# Typing numbers into the public forms: each new number makes a profile (and, on a join code,
# earns its points), and numbers are not verified yet (one-time SMS codes come with
# messaging). A browser may send 10 numbers per 10 minutes, an address 60 (a café's Wi-Fi
# puts many guests behind one address).
NUMBERS_PER_DEVICE = 10
NUMBERS_PER_IP = 60
NUMBERS_WINDOW = 600


def _limit_numbers(request: Request, device: str) -> None:
    """Count one number sent from this browser and address; RateLimited (429) past the
    budget."""
    enforce(f"loops-number:device:{device}", limit=NUMBERS_PER_DEVICE,
            window_seconds=NUMBERS_WINDOW)
    if request.client is not None:
        enforce(f"loops-number:ip:{request.client.host}", limit=NUMBERS_PER_IP,
                window_seconds=NUMBERS_WINDOW)


def _actor(tenant_id: str) -> Actor:
    return system_actor(tenant_id, ACTOR_LABEL)


def _device(request: Request) -> tuple[str, bool]:
    """The browser's device id, and whether it is new (then the answer sets the cookie)."""
    value = request.cookies.get(DEVICE_COOKIE)
    if value and _DEVICE_ID.fullmatch(value):
        return value, False
    return secrets.token_urlsafe(18), True


def _finish(request: Request, response: Response, device: str | None = None,
            new: bool = False) -> Response:
    response.headers.update(_HEADERS)
    if new and device:
        # What Response.set_cookie writes, without building a SimpleCookie for it (a tenth of
        # a scan's time): the id is URL-safe base64, nothing in it needs quoting.
        secure = "; Secure" if request.scope["scheme"] == "https" else ""
        response.headers.append("set-cookie", f"{DEVICE_COOKIE}={device}; HttpOnly; "
                                f"Max-Age={DEVICE_MAX_AGE}; Path=/; SameSite=lax{secure}")
    return response


def _message(request: Request, heading: str, message: str, status_code: int,
             brand: str = "") -> Response:
    return _finish(request, render(request, "consumer/message.html", {
        "brand": brand, "heading": heading, "message": message}, status_code=status_code))


def _unknown(request: Request) -> Response:
    return _message(request, gettext("This code is not in use"), gettext(
        "The QR code or link you opened is not (or no longer) in use. Please ask the staff, "
        "or look for another code nearby."), 404)


class _PageCache:
    """Rendered anonymous landing pages, per (code, language, query), for PAGE_TTL seconds;
    forgotten with the code's lookup (an admin change) through `lookup.on_forget`."""

    def __init__(self) -> None:
        self._pages: dict[tuple[str, str, str], tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        with self._lock:
            entry = self._pages.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def put(self, key: tuple[str, str, str], body: bytes) -> bytes:
        with self._lock:
            if len(self._pages) >= lookup.MAX_ENTRIES:
                self._pages.clear()
            self._pages[key] = (time.monotonic() + PAGE_TTL, body)
        return body

    def forget(self, code: str | None) -> None:
        with self._lock:
            for key in [k for k in self._pages if code is None or k[0] == code]:
                del self._pages[key]


PAGE_TTL = lookup.TTL_SECONDS
_page_cache = _PageCache()
lookup.on_forget(_page_cache.forget)


def _with_lang(path: str) -> str:
    if current_locale.get() == "en":
        return path + ("&" if "?" in path else "?") + "lang=en"
    return path


def _offer_text(session: Session, tenant_id: str, campaign_id: str | None) -> str:
    if not campaign_id:
        return ""
    campaign = session.get(Campaign, (tenant_id, campaign_id))
    tenant = session.get(Tenant, tenant_id)
    if campaign is None or tenant is None:
        return ""
    return offer_of(campaign, tenant, {}).value


def _incentive(session: Session | None, view: TouchpointView) -> dict[str, Any]:
    """What the page promises; `session` is needed only to name a reward coupon's offer."""
    offer = (_offer_text(session, view.tenant_id, view.reward_campaign_id)
             if session is not None else "")
    return {"points": view.reward_points, "offer": offer}


# --- /t/<code> ------------------------------------------------------------------------------


def _landing(request: Request, session: Session | None, view: TouchpointView, *,
             receipt: Receipt | None = None, receipt_token: str = "", phone: str = "",
             visitor: Visitor | None = None, errors: dict[str, str] | None = None,
             notice: str | None = None, values: dict[str, str] | None = None,
             status_code: int = 200, device: str | None = None,
             new_device: bool = False, verification_id: str | None = None) -> Response:
    feedback = view.purpose == Purpose.feedback or request.url.path.endswith("/feedback")
    context = {
        "brand": view.tenant_name, "tp": view, "purpose_label": gettext(
            PURPOSE_LABELS[Purpose.feedback if feedback else view.purpose]),
        "feedback": feedback, "action": _with_lang(f"/t/{view.code}"),
        "form_token": form_token(view.tenant_id, view.id), "phone": phone,
        "receipt": receipt, "receipt_token": receipt_token,
        "visitor_token": visitor_token(visitor) if visitor else "",
        "errors": errors or {}, "notice": notice, "values": values or {},
        "verification_id": verification_id,
        # A follow-up (feedback on a join code) earns nothing more: promise nothing then.
        "incentive": _incentive(session, view) if not feedback or view.purpose == Purpose
        .feedback else {"points": 0, "offer": ""},
        "ratings": range(1, 6), "scores": range(11)}
    return _finish(request, render(request, "consumer/loops/landing.html", context,
                                   status_code=status_code), device, new_device)


async def _touchpoint(code: str) -> TouchpointView | None:
    """The touchpoint from memory; a miss reads it in the thread pool (never on the loop)."""
    hit, view = lookup.cached_touchpoint(code)
    return view if hit else await in_thread(lookup.touchpoint, code)


def _landing_with_database(request: Request, view: TouchpointView, receipt_token: str,
                           device: str, new: bool) -> Response:
    """The landing page when it needs the database: a receipt to check, an offer to name."""
    with get_database().unit_of_work(write=False) as session:
        receipt = None
        if receipt_token:
            try:
                receipt = receipt_from_token(session, view.tenant_id, receipt_token)
            except (ReceiptRefused, ReceiptExpired) as error:
                return _finish(request, _message(
                    request, gettext("This receipt code cannot be used"), error.localized(),
                    400, view.tenant_name), device, new)
        return _landing(request, session, view, receipt=receipt, receipt_token=receipt_token,
                        device=device, new_device=new)


@router.get("/t/{code}")
async def touchpoint_page(code: str, request: Request) -> Response:
    """A scan. Async and, for most codes, without the database: see the module's doc."""
    view = await _touchpoint(code)
    if view is None or not view.enabled:
        return _unknown(request)
    device, new = _device(request)
    recorder.add(Hit(tenant_id=view.tenant_id, type="qr_scan", source="touchpoint",
                     store_id=view.store_id, device_id=device,
                     properties={"touchpoint_id": view.id, "code": view.code,
                                 "purpose": view.purpose.value}))
    if view.purpose == Purpose.url:
        return _finish(request, RedirectResponse(view.target_url, status_code=302), device, new)
    if view.purpose == Purpose.claim and view.campaign_id:
        target = _with_lang(f"/c/{view.tenant_slug}/claim/{view.campaign_id}?"
                            + urlencode({"channel": "qr", "tp": view.code}))
        return _finish(request, RedirectResponse(target, status_code=302), device, new)
    receipt_token = request.query_params.get("r", "") if request.scope["query_string"] else ""
    if receipt_token:
        return await in_thread(_landing_with_database, request, view, receipt_token,
                                       device, new)
    # The page of a code is the same for every phone for a while (its form token stays
    # valid for hours): rendered once per code, language and query per PAGE_TTL seconds.
    locale = current_locale.get()
    key = (view.code, locale, request.scope["query_string"].decode("latin-1"))
    body = _page_cache.get(key)
    if body is None:
        if view.reward_campaign_id:
            rendered = await in_thread(_landing_with_database, request, view, "",
                                               device, False)
        else:
            rendered = _landing(request, None, view)
        body = _page_cache.put(key, bytes(rendered.body))
    page = HTMLResponse(body, headers={"Cache-Control": "no-store",
                                       "Content-Language": html_lang(locale)})
    return _finish(request, page, device, new)


@router.get("/t/{code}/feedback")
def feedback_page(code: str, request: Request, session: SessionDep, v: str = "") -> Response:
    """The feedback form for a visitor already identified on this visit (no phone asked)."""
    view = lookup.touchpoint(code)
    if view is None or not view.enabled:
        return _unknown(request)
    visitor = visitor_from_token(v, view.tenant_id) if v else None
    return _landing(request, session, view, visitor=visitor)


def _parse_score(text: str) -> int | str | None:
    text = text.strip()
    if not text:
        return None
    return int(text) if re.fullmatch(r"-?\d{1,3}", text) else text


@router.post("/t/{code}")
def touchpoint_action(code: str, request: Request, session: SessionDep, phone: FormText = "",
                      form_token: FormText = "", v: FormText = "", r: FormText = "",
                      rating: FormText = "", nps: FormText = "",
                      comment: FormText = "", verification_id: FormText = "",
                      sms_code: FormText = "") -> Response:
    view = lookup.touchpoint(code)
    if view is None or not view.enabled:
        return _unknown(request)
    device, new = _device(request)
    actor = _actor(view.tenant_id)
    visitor = visitor_from_token(v, view.tenant_id) if v else None
    feedback = view.purpose == Purpose.feedback or bool(rating)
    values = {"rating": rating, "nps": nps, "comment": comment[:2000]}
    receipt = None

    def again(status_code: int, **extra: Any) -> Response:
        session.rollback()  # nothing of a refused step is kept
        return _landing(request, session, view, receipt=receipt, receipt_token=r,
                        phone=phone, visitor=visitor, values=values, status_code=status_code,
                        device=device, new_device=new, **extra)

    if not form_token_ok(form_token, view.tenant_id, view.id):
        return again(400, notice=gettext(
            "This page was open for a long time, so nothing was sent yet. Please tap the "
            "button again."))
    if r:
        try:
            receipt = receipt_from_token(session, view.tenant_id, r)
        except (ReceiptRefused, ReceiptExpired) as error:
            return _message(request, gettext("This receipt code cannot be used"),
                            error.localized(), 400, view.tenant_name)
    errors: dict[str, str] = {}
    rating_value = _parse_score(rating)
    nps_value = _parse_score(nps)
    if feedback:
        if not isinstance(rating_value, int) or not 1 <= rating_value <= 5:
            errors["rating"] = gettext("Choose a rating from 1 to 5 stars.")
        if nps_value is not None and (not isinstance(nps_value, int)
                                      or not 0 <= nps_value <= 10):
            errors["nps"] = gettext("Choose a score from 0 to 10, or leave it empty.")
    e164 = None
    if visitor is None:
        e164 = mobile_number(phone) if phone.strip() else None
        if e164 is None:
            errors["phone"] = gettext("Enter your mobile number, e.g. 0912 345 678.")
    if errors:
        return again(422, errors=errors)
    if visitor is None:
        assert e164 is not None
        # Phone verification (messaging.otp), when the brand asks for it: a code by SMS
        # first. Answered without rolling back, so the code sent (or the attempt counted)
        # is kept.
        gate = otp.gate(session, get_tenant(session, view.tenant_id), e164,
                        client_ip(request), verification_id, sms_code)
        if not gate.passed:
            return _landing(request, session, view, receipt=receipt, receipt_token=r,
                            phone=phone, values=values, status_code=gate.status,
                            device=device, new_device=new,
                            verification_id=gate.verification_id,
                            errors={"sms_code": gettext(gate.error)} if gate.error else None)
        try:
            _limit_numbers(request, device)
        except RateLimited as error:
            return again(429, notice=error.localized())
        visitor = identify_visitor(session, actor, e164, device, source="touchpoint",
                                   verified=gate.verification_id is not None)
    now = utcnow()
    marks: dict[str, str] = {}
    try:
        if feedback:
            result = submit_feedback(session, actor, customer_id=visitor.customer_id,
                                     rating=rating_value, nps=nps_value, comment=comment,
                                     store_id=view.store_id, touchpoint_id=view.id,
                                     receipt=receipt, now=now)
            marks["fb"] = result.feedback.id
            key = (f"loops:feedback:{receipt.id}" if receipt else
                   f"loops:feedback:{view.id}:{visitor.customer_id}:{date.today().isoformat()}")
        elif view.purpose == Purpose.membership:
            key = f"loops:join:{visitor.customer_id}"
        else:
            key = f"loops:{view.purpose.value}:{view.id}:{visitor.customer_id}"
        # The touchpoint's incentive is for its own purpose: feedback left as a follow-up
        # on a join code earns nothing more (the join was rewarded), whatever the rating.
        reward = give_reward(session, actor, visitor, key=key,
                             campaign_id=view.reward_campaign_id, points=view.reward_points,
                             reason=f"touchpoint {view.code}", touchpoint_code=view.code,
                             now=now) if not feedback or view.purpose == Purpose.feedback \
            else Reward()
    except OmniloopError as error:
        return again(error.status if 400 <= error.status < 500 else 409,
                     notice=error.localized())
    if reward.points:
        marks["pts"] = str(reward.points)
    if reward.coupon is not None:
        marks["cp"] = reward.coupon.id
    if reward.refused:
        marks["nr"] = "1"
    code_for(session, actor, visitor.customer_id)  # the done page shows it; GETs don't write
    query = urlencode({"v": visitor_token(visitor), **marks})
    return _finish(request, RedirectResponse(_with_lang(f"/t/{view.code}/done?{query}"),
                                             status_code=303), device, new)


def referral_url(tenant_slug: str, code: str) -> str:
    return f"{get_settings().base_url.rstrip('/')}/c/{tenant_slug}/ref/{code}"


@router.get("/t/{code}/done")
def done_page(code: str, request: Request, session: SessionDep, v: str = "", pts: str = "",
              cp: str = "", fb: str = "", nr: str = "") -> Response:
    view = lookup.touchpoint(code)
    if view is None:
        return _unknown(request)
    visitor = visitor_from_token(v, view.tenant_id)
    if visitor is None:
        return RedirectResponse(_with_lang(f"/t/{view.code}"), status_code=303)
    referral_code = session.scalar(select(ReferralCode.code).where(
        ReferralCode.tenant_id == view.tenant_id, ReferralCode.customer_id == visitor.customer_id))
    link = referral_url(view.tenant_slug, referral_code) if referral_code else ""
    coupon = session.get(Coupon, (view.tenant_id, cp)) if cp else None
    wallet = None
    if coupon is not None and coupon.customer_id is not None:
        wallet = claims.wallet_path(session, view.tenant_id, coupon.customer_id,
                                    None if visitor.trusted else coupon.id)
    review_url = view.target_url if view.purpose in (Purpose.feedback, Purpose.review) else ""
    review_code = view.code
    if fb and not review_url:
        # Feedback left on another kind of code: invite to the store's review page all the
        # same (every respondent is invited), from its review or feedback touchpoint.
        found = session.execute(select(Touchpoint.code, Touchpoint.target_url).where(
            Touchpoint.tenant_id == view.tenant_id, Touchpoint.store_id == view.store_id,
            Touchpoint.purpose.in_([Purpose.review, Purpose.feedback]),
            Touchpoint.enabled.is_(True), Touchpoint.target_url != "")
            .order_by(Touchpoint.purpose.desc(), Touchpoint.created_at).limit(1)).first()
        if found is not None:
            review_code, review_url = found
    share_text = gettext("Here is a welcome offer from {brand} for you: {link}").format(
        brand=view.tenant_name, link=link)
    return _finish(request, render(request, "consumer/loops/done.html", {
        "brand": view.tenant_name, "tp": view, "visitor_token": v,
        "points": int(pts) if pts.isdigit() else 0, "coupon": coupon, "wallet_url": wallet,
        "reward_refused": bool(nr), "feedback_given": bool(fb), "review_url": review_url,
        "review_code": review_code,
        "referral_link": link, "referral_code": referral_code,
        "referral_qr": qr_svg(link, scale=4, css_class="qr") if link else "",
        "share_text": share_text, "line_url": view.target_url
        if view.purpose == Purpose.line_follow else "",
        "feedback_url": _with_lang(f"/t/{view.code}/feedback?{urlencode({'v': v})}")}))


@router.get("/t/{code}/go")
def go(code: str, request: Request, v: str = "") -> Response:
    """Leave for the review page or the LINE account, counting the click (recorder)."""
    view = lookup.touchpoint(code)
    if view is None or not view.enabled or not view.target_url:
        return _unknown(request)
    visitor = visitor_from_token(v, view.tenant_id) if v else None
    device, new = _device(request)
    kind = "review_clicked" if view.purpose in (Purpose.feedback, Purpose.review) else (
        "link_click")
    recorder.add(Hit(tenant_id=view.tenant_id, type=kind, source="touchpoint",
                     store_id=view.store_id, device_id=device,
                     customer_id=visitor.customer_id if visitor else None,
                     properties={"touchpoint_id": view.id, "code": view.code,
                                 "purpose": view.purpose.value}))
    return _finish(request, RedirectResponse(view.target_url, status_code=302), device, new)


@router.post("/t/{code}/share")
def share(code: str, request: Request, session: SessionDep, v: FormText = "") -> Response:
    """The member shares their referral link (LINE's share screen); recorded as `share`."""
    view = lookup.touchpoint(code)
    if view is None:
        return _unknown(request)
    visitor = visitor_from_token(v, view.tenant_id)
    if visitor is None:
        return RedirectResponse(_with_lang(f"/t/{view.code}"), status_code=303)
    actor = _actor(view.tenant_id)
    referral_code = code_for(session, actor, visitor.customer_id)
    link = referral_url(view.tenant_slug, referral_code)
    record_event(session, actor, client_event_id=f"share:{secrets.token_hex(12)}", type="share",
                 channel="online", source="line", customer_id=visitor.customer_id,
                 store_id=view.store_id, properties={"code": referral_code,
                                                     "touchpoint_id": view.id})
    text = gettext("Here is a welcome offer from {brand} for you: {link}").format(
        brand=view.tenant_name, link=link)
    return RedirectResponse("https://line.me/R/msg/text/?" + quote(text), status_code=303)


# --- /r/<code> ------------------------------------------------------------------------------


@router.get("/r/{code}")
async def short_link(code: str, request: Request) -> Response:
    """A click: from memory, recorded by the recorder, answered without the database."""
    hit, view = lookup.cached_link(code)
    if not hit:
        view = await in_thread(lookup.link, code)
    if view is None or not view.enabled:
        return _unknown(request)
    bot = is_bot(request.headers.get("user-agent"))
    device = request.cookies.get(DEVICE_COOKIE)
    arrived = {name: request.query_params[name][:64] for name in UTM
               if request.query_params.get(name)}
    utm = dict(view.utm) | arrived
    recorder.add(Hit(tenant_id=view.tenant_id, type="link_click", source="short_link",
                     store_id=None, link_id=view.id, bot=bot,
                     device_id=device if device and _DEVICE_ID.fullmatch(device) else None,
                     properties={"link_id": view.id, "code": view.code, **utm}))
    target = with_utm(view.target_url, tuple(utm.items()))
    response = RedirectResponse(target, status_code=302)
    response.headers["Cache-Control"] = "no-store"  # every click must reach us to count
    return response


# --- /c/<brand>/ref/<code> ------------------------------------------------------------------


def _tenant(session: Session, slug: str) -> Tenant | None:
    try:
        return get_tenant_by_slug(session, slug)
    except TenantNotFound:
        return None


def _invitation(request: Request, session: Session, tenant: Tenant, code: str, *,
                phone: str = "", errors: dict[str, str] | None = None,
                refused: str | None = None, status_code: int = 200,
                verification_id: str | None = None) -> Response:
    program = session.get(LoopProgram, tenant.id)  # GET: read, never create
    campaign = (session.get(Campaign, (tenant.id, program.welcome_campaign_id))
                if program and program.welcome_campaign_id else None)
    offer = offer_of(campaign, tenant, {}) if campaign else None
    return _finish(request, render(request, "consumer/loops/invite.html", {
        "brand": tenant.name, "offer": offer, "code": code, "phone": phone,
        "errors": errors or {}, "refused": refused, "verification_id": verification_id,
        "action": _with_lang(f"/c/{tenant.slug}/ref/{code}"),
        "form_token": form_token(tenant.id, code),
        "qualify_days": program.qualify_days if program else 0}, status_code=status_code))


@router.get("/c/{tenant_slug}/ref/{code}")
def invitation(tenant_slug: str, code: str, request: Request, session: SessionDep) -> Response:
    tenant = _tenant(session, tenant_slug)
    if tenant is None:
        return _unknown(request)
    try:
        referrer_of(session, tenant.id, code)
    except OmniloopError:
        return _unknown(request)
    return _invitation(request, session, tenant, code.upper())


@router.post("/c/{tenant_slug}/ref/{code}")
def accept_invitation(tenant_slug: str, code: str, request: Request, session: SessionDep,
                      phone: FormText = "", form_token: FormText = "",
                      verification_id: FormText = "", sms_code: FormText = "") -> Response:
    tenant = _tenant(session, tenant_slug)
    if tenant is None:
        return _unknown(request)
    code = code.upper()
    device, new = _device(request)
    if not form_token_ok(form_token, tenant.id, code):
        return _invitation(request, session, tenant, code, phone=phone, status_code=400,
                           refused=gettext("This page was open for a long time, so nothing "
                                           "was sent yet. Please tap the button again."))
    e164 = mobile_number(phone) if phone.strip() else None
    if e164 is None:
        return _invitation(request, session, tenant, code, phone=phone, status_code=422,
                           errors={"phone": gettext(
                               "Enter your mobile number, e.g. 0912 345 678.")})
    gate = otp.gate(session, tenant, e164, client_ip(request), verification_id, sms_code)
    if not gate.passed:  # the code sent (or the attempt counted) is kept: no rollback
        return _invitation(request, session, tenant, code, phone=phone,
                           status_code=gate.status, verification_id=gate.verification_id,
                           errors={"sms_code": gettext(gate.error)} if gate.error else None)
    try:
        _limit_numbers(request, device)
        result = refer(session, _actor(tenant.id), code, e164, device,
                       verified=gate.verification_id is not None)
    except OmniloopError as error:
        session.rollback()
        status_code = error.status if 400 <= error.status < 500 else 409
        return _invitation(request, session, tenant, code, phone=phone,
                           status_code=status_code, refused=error.localized())
    if not result.trusted and not result.created:
        session.rollback()  # a known number from an unknown browser: reveal nothing
        return _invitation(request, session, tenant, code, phone=phone, status_code=409,
                           refused=gettext("This number already holds this offer. Open it "
                                           "from the phone it was claimed on."))
    wallet = claims.wallet_path(session, tenant.id, result.friend_id,
                                None if result.trusted else result.coupon.id)
    mark = "added" if result.created else "held"
    target = _with_lang(f"{wallet}?{urlencode({mark: result.coupon.id})}")
    return _finish(request, RedirectResponse(f"{target}#coupon-{result.coupon.id}",
                                             status_code=303), device, new)


# --- the scan fast path ---------------------------------------------------------------------

_SCAN_PATH = re.compile(r"/([tr])/([^/]+)")


class ScanFastPath:
    """`GET /t/<code>` and `GET /r/<code>` handed straight to their handlers.

    Installed by the app inside the locale middleware and outside everything else, so a
    scan skips the session middleware, the exception middleware, the router and FastAPI's
    request handling: ~100 µs of the ~230 µs a scan cost (docs/benchmarks.md). The handlers
    are the routes' own functions (the routes stay registered for everything this leaves to
    them: other methods, other paths), they read no session, and they answer their own
    errors (an unknown code is a page, not an exception).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = _SCAN_PATH.fullmatch(scope["path"])
            if found is not None:
                request = Request(scope, receive)
                handler = touchpoint_page if found.group(1) == "t" else short_link
                try:
                    response = await handler(found.group(2), request)  # decoded, as FastAPI's
                except Exception as error:  # the app's own handlers (a busy database: 503)
                    response = handled_error(scope, request, error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

