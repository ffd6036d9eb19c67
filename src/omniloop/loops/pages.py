"""Admin pages of the loop: touchpoints (and their posters), feedback and service recovery,
referrals and their settings, short links, and the loop report.

Thin: every page calls the module's services; a refusal re-renders the form with the
service's message (web.forms.refused rolls back what it had written).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, status
from fastapi.responses import Response
from sqlalchemy import select

from omniloop.api.deps import SessionDep
from omniloop.campaigns.consumer_pages import offer_of
from omniloop.campaigns.models import Campaign
from omniloop.core.clock import to_local, utcnow
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.core.qr import qr_svg
from omniloop.core.settings import get_settings
from omniloop.customers.event_types import EVENT_TYPES
from omniloop.loops import feedback as feedback_service
from omniloop.loops import links as links_service
from omniloop.loops import referrals as referrals_service
from omniloop.loops import touchpoints as tp_service
from omniloop.loops.errors import ProgramInvalid, TouchpointNotFound
from omniloop.loops.models import Placement, Purpose, TaskStatus, Touchpoint
from omniloop.loops.posters import SIZES, PosterPage, poster_pdf
from omniloop.loops.program import ProgramData, get_program, update_program
from omniloop.loops.report import ACTION_TYPES, loop_report
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import Store
from omniloop.tenancy.tenants import get_tenant
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, refused, register_flash
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin/loops", include_in_schema=False)
register(NavItem("loops", N_("In-store loop"), "/admin/loops/touchpoints",
                 Permission.campaigns_read, 13))
register_flash("touchpoint_saved", N_("Touchpoint saved."))
register_flash("tables_made", N_("Table touchpoints created."))
register_flash("task_saved", N_("Task updated."))
register_flash("make_good_sent", N_("Make-good coupon added to the customer's wallet."))
register_flash("program_saved", N_("Settings saved."))
register_flash("link_saved", N_("Short link saved."))
register_flash("touchpoint_retired", N_("Touchpoint retired: its code now says it is not in use."))
register_flash("touchpoint_deleted", N_("Touchpoint deleted."))

ACTION_LABELS: dict[str, str] = {
    **{name: EVENT_TYPES[name].label for name in ACTION_TYPES},
    "referral": N_("Referred a friend"),
}
FormText = Annotated[str, Form()]
FormCheck = Annotated[str | None, Form()]


def base_url() -> str:
    return get_settings().base_url.rstrip("/")


def touchpoint_url(code: str) -> str:
    return f"{base_url()}/t/{code}"


def _stores(session: SessionDep, actor: Actor) -> list[Store]:
    return [s for s in session.scalars(select(Store).where(
        Store.tenant_id == actor.tenant_id).order_by(Store.code)) if actor.sees_store(s.id)]


def _campaigns(session: SessionDep, actor: Actor) -> list[Campaign]:
    return list(session.scalars(select(Campaign).where(
        Campaign.tenant_id == actor.tenant_id).order_by(Campaign.created_at.desc())))


def _int(text: str, default: int | None = None) -> int | None:
    text = text.strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return None


# --- touchpoints ----------------------------------------------------------------------------


@router.get("/touchpoints")
def touchpoint_list(admin: Admin, session: SessionDep, done: str | None = None,
                    store: str = "", show: str = "") -> Response:
    retired = show == "retired"
    items = tp_service.list_touchpoints(session, admin.actor, store or None, retired=retired)
    stores = _stores(session, admin.actor)
    names = {s.id: s.name for s in stores}
    return render(admin.request, "admin/loops/touchpoints.html", admin.template_values(
        "loops", items=[(t, tp_service.touchpoint_label(t), touchpoint_url(t.code)) for t in items],
        stores=stores, store_names=names, chosen_store=store, retired=retired,
        purposes=tp_service.PURPOSE_LABELS, placements=tp_service.PLACEMENT_LABELS,
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done)))


def _form_values(t: Touchpoint | None) -> dict[str, Any]:
    if t is None:
        return {"store_id": "", "placement": "table", "purpose": "membership", "name": "",
                "number": "", "target_url": "", "campaign_id": "", "reward_campaign_id": "",
                "reward_points": "0", "enabled": True}
    return {"store_id": t.store_id, "placement": t.placement.value, "purpose": t.purpose.value,
            "name": t.name, "number": "" if t.number is None else str(t.number),
            "target_url": t.target_url, "campaign_id": t.campaign_id or "",
            "reward_campaign_id": t.reward_campaign_id or "",
            "reward_points": str(t.reward_points), "enabled": t.enabled}


def _form_page(admin: AdminContext, session: SessionDep, values: dict[str, Any],
               touchpoint: Touchpoint | None, error: str | None = None,
               status_code: int = 200) -> Response:
    return render(admin.request, "admin/loops/touchpoint_form.html", admin.template_values(
        "loops", values=values, touchpoint=touchpoint, error=error,
        stores=_stores(session, admin.actor), campaigns=_campaigns(session, admin.actor),
        purposes=tp_service.PURPOSE_LABELS, placements=tp_service.PLACEMENT_LABELS,
        qr=qr_svg(touchpoint_url(touchpoint.code), scale=4) if touchpoint else "",
        url=touchpoint_url(touchpoint.code) if touchpoint else ""), status_code=status_code)


def _data(values: dict[str, Any]) -> tp_service.TouchpointData | str:
    try:
        placement = Placement(values["placement"])
        purpose = Purpose(values["purpose"])
    except ValueError:
        return N_("Choose a placement and a purpose from the lists.")
    number = _int(values["number"])
    points = _int(values["reward_points"], 0)
    if (values["number"].strip() and number is None) or points is None:
        return N_("Table number and reward points are whole numbers.")
    return tp_service.TouchpointData(
        store_id=values["store_id"], placement=placement, purpose=purpose,
        name=values["name"].strip(), number=number, target_url=values["target_url"].strip(),
        campaign_id=values["campaign_id"] or None,
        reward_campaign_id=values["reward_campaign_id"] or None, reward_points=points,
        enabled=bool(values["enabled"]))


@router.get("/touchpoints/new")
def new_touchpoint(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    return _form_page(admin, session, _form_values(None), None)


def _save(admin: AdminContext, session: SessionDep, touchpoint: Touchpoint | None,
          values: dict[str, Any], first: int | None = None, last: int | None = None) -> Response:
    data = _data(values)
    if isinstance(data, str):
        return _form_page(admin, session, values, touchpoint, gettext(data),
                          status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        if touchpoint is not None:
            tp_service.update_touchpoint(session, admin.actor, touchpoint.id, data)
        elif first is not None and last is not None:
            tp_service.create_tables(session, admin.actor, data.store_id, first, last, data)
            return redirect_done("/admin/loops/touchpoints", "tables_made")
        else:
            tp_service.create_touchpoint(session, admin.actor, data)
    except OmniloopError as error:
        return _form_page(admin, session, values, touchpoint, refused(session, error),
                          error.status)
    return redirect_done("/admin/loops/touchpoints", "touchpoint_saved")


@router.post("/touchpoints/new", dependencies=[CsrfChecked])
def create_touchpoint(admin: Admin, session: SessionDep, store_id: FormText = "",
                      placement: FormText = "", purpose: FormText = "", name: FormText = "",
                      number: FormText = "", target_url: FormText = "",
                      campaign_id: FormText = "", reward_campaign_id: FormText = "",
                      reward_points: FormText = "0", enabled: FormCheck = None,
                      tables_to: FormText = "") -> Response:
    admin.actor.require(Permission.campaigns_manage)
    values = {"store_id": store_id, "placement": placement, "purpose": purpose, "name": name,
              "number": number, "target_url": target_url, "campaign_id": campaign_id,
              "reward_campaign_id": reward_campaign_id, "reward_points": reward_points,
              "enabled": enabled is not None, "tables_to": tables_to}
    last = _int(tables_to)
    first = _int(number)
    if placement == "table" and last is not None and first is not None:
        return _save(admin, session, None, values, first, last)
    return _save(admin, session, None, values)


@router.get("/touchpoints/{touchpoint_id}")
def edit_touchpoint(touchpoint_id: str, admin: Admin, session: SessionDep) -> Response:
    touchpoint = tp_service.get_touchpoint(session, admin.actor, touchpoint_id)
    return _form_page(admin, session, _form_values(touchpoint), touchpoint)


@router.post("/touchpoints/{touchpoint_id}", dependencies=[CsrfChecked])
def update_touchpoint(touchpoint_id: str, admin: Admin, session: SessionDep,
                      store_id: FormText = "", placement: FormText = "",
                      purpose: FormText = "", name: FormText = "", number: FormText = "",
                      target_url: FormText = "", campaign_id: FormText = "",
                      reward_campaign_id: FormText = "", reward_points: FormText = "0",
                      enabled: FormCheck = None) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    touchpoint = tp_service.get_touchpoint(session, admin.actor, touchpoint_id)
    values = {"store_id": store_id, "placement": placement, "purpose": purpose, "name": name,
              "number": number, "target_url": target_url, "campaign_id": campaign_id,
              "reward_campaign_id": reward_campaign_id, "reward_points": reward_points,
              "enabled": enabled is not None}
    return _save(admin, session, touchpoint, values)


@router.post("/touchpoints/{touchpoint_id}/enabled", dependencies=[CsrfChecked])
def toggle_touchpoint(touchpoint_id: str, admin: Admin, session: SessionDep,
                      enabled: FormText = "") -> Response:
    tp_service.set_enabled(session, admin.actor, touchpoint_id, enabled == "1")
    return redirect_done("/admin/loops/touchpoints", "touchpoint_saved")


@router.get("/touchpoints/{touchpoint_id}/remove")
def remove_touchpoint_page(touchpoint_id: str, admin: Admin, session: SessionDep) -> Response:
    """The confirm step: delete a touchpoint never used, retire one that was."""
    admin.actor.require(Permission.campaigns_manage)
    touchpoint = tp_service.get_touchpoint(session, admin.actor, touchpoint_id)
    return _remove_page(admin, session, touchpoint)


def _remove_page(admin: AdminContext, session: SessionDep, touchpoint: Touchpoint,
                 error: str | None = None, status_code: int = 200) -> Response:
    store = next((s for s in _stores(session, admin.actor) if s.id == touchpoint.store_id),
                 None)
    return render(admin.request, "admin/loops/touchpoint_remove.html", admin.template_values(
        "loops", touchpoint=touchpoint, label=tp_service.touchpoint_label(touchpoint),
        store_name=store.name if store else "", url=touchpoint_url(touchpoint.code),
        used=tp_service.was_used(session, touchpoint), error=error,
        purposes=tp_service.PURPOSE_LABELS), status_code=status_code)


@router.post("/touchpoints/{touchpoint_id}/retire", dependencies=[CsrfChecked])
def retire_touchpoint(touchpoint_id: str, admin: Admin, session: SessionDep) -> Response:
    tp_service.retire_touchpoint(session, admin.actor, touchpoint_id)
    return redirect_done("/admin/loops/touchpoints", "touchpoint_retired")


@router.post("/touchpoints/{touchpoint_id}/delete", dependencies=[CsrfChecked])
def delete_touchpoint(touchpoint_id: str, admin: Admin, session: SessionDep) -> Response:
    try:
        tp_service.delete_touchpoint(session, admin.actor, touchpoint_id)
    except OmniloopError as error:
        message = refused(session, error)
        touchpoint = tp_service.get_touchpoint(session, admin.actor, touchpoint_id)
        return _remove_page(admin, session, touchpoint, message, error.status)
    return redirect_done("/admin/loops/touchpoints", "touchpoint_deleted")


def _poster_pages(session: SessionDep, actor: Actor,
                  touchpoints: list[Touchpoint]) -> list[PosterPage]:
    stores = {s.id: s for s in _stores(session, actor)}
    pages = []
    for t in touchpoints:
        offer = ""
        campaign = (session.get(Campaign, (actor.tenant_id, t.reward_campaign_id))
                    if t.reward_campaign_id else None)
        if campaign is not None:
            offer = offer_of(campaign, get_tenant(session, actor.tenant_id), {}).value
        pages.append(PosterPage(url=touchpoint_url(t.code), store_name=stores[t.store_id].name,
                                purpose=t.purpose, number=t.number,
                                label=tp_service.touchpoint_label(t) if t.number is None else "",
                                points=t.reward_points, offer=offer))
    return pages


def _pdf(pages: list[PosterPage], size: str, lang: str, filename: str) -> Response:
    size = size if size in SIZES else "a4"
    language = lang if lang in ("zh_TW", "en") else "zh_TW"
    return Response(poster_pdf(pages, size=size, language=language),
                    media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{filename}-{size}.pdf"'})


@router.get("/touchpoints/{touchpoint_id}/poster.pdf")
def poster(touchpoint_id: str, admin: Admin, session: SessionDep, size: str = "a4",
           lang: str = "zh_TW") -> Response:
    touchpoint = tp_service.get_touchpoint(session, admin.actor, touchpoint_id)
    return _pdf(_poster_pages(session, admin.actor, [touchpoint]), size, lang,
                f"touchpoint-{touchpoint.code}")


@router.get("/stores/{store_id}/tables.pdf")
def table_posters(store_id: str, admin: Admin, session: SessionDep, size: str = "a6",
                  lang: str = "zh_TW") -> Response:
    tables = [t for t in tp_service.list_touchpoints(session, admin.actor, store_id)
              if t.placement == Placement.table and t.enabled]
    if not tables:
        raise TouchpointNotFound()
    return _pdf(_poster_pages(session, admin.actor, tables), size, lang, "tables")


# --- feedback and service recovery ----------------------------------------------------------


@router.get("/feedback")
def feedback_list(admin: Admin, session: SessionDep, done: str | None = None,
                  status_filter: str = "") -> Response:
    chosen = TaskStatus(status_filter) if status_filter in TaskStatus.__members__ else None
    tasks = feedback_service.list_tasks(session, admin.actor, chosen)
    items = feedback_service.list_feedback(session, admin.actor)
    stores = {s.id: s.name for s in _stores(session, admin.actor)}
    return render(admin.request, "admin/loops/feedback.html", admin.template_values(
        "loops", tasks=tasks, feedback=items, stores=stores, statuses=feedback_service
        .STATUS_LABELS, chosen=status_filter, flash=flash_message(done),
        can_act=admin.actor.can(Permission.customers_write)))


@router.post("/tasks/{task_id}", dependencies=[CsrfChecked])
def update_task(task_id: str, admin: Admin, session: SessionDep, status_value: FormText = "",
                note: FormText = "") -> Response:
    try:
        task_status = TaskStatus(status_value)
    except ValueError:
        task_status = TaskStatus.open
    feedback_service.update_task(session, admin.actor, task_id, task_status, note)
    return redirect_done("/admin/loops/feedback", "task_saved")


@router.post("/tasks/{task_id}/make-good", dependencies=[CsrfChecked])
def make_good(task_id: str, admin: Admin, session: SessionDep) -> Response:
    feedback_service.offer_make_good(session, admin.actor, task_id)
    return redirect_done("/admin/loops/feedback", "make_good_sent")


# --- referrals ------------------------------------------------------------------------------


@router.get("/referrals")
def referral_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    program = get_program(session, admin.actor.tenant_id) if admin.actor.can(
        Permission.campaigns_manage) else None
    referrals = referrals_service.list_referrals(session, admin.actor)
    return render(admin.request, "admin/loops/referrals.html", admin.template_values(
        "loops", program=program, referrals=[(r, referrals_service.shown_status(r))
                                             for r in referrals],
        campaigns=_campaigns(session, admin.actor), flash=flash_message(done), error=None))


@router.post("/referrals/settings", dependencies=[CsrfChecked])
def save_program(admin: Admin, session: SessionDep, welcome_campaign_id: FormText = "",
                 make_good_campaign_id: FormText = "", qualify_days: FormText = "30",
                 monthly_cap: FormText = "10", referrer_points: FormText = "100",
                 friend_points: FormText = "50", low_rating: FormText = "2",
                 low_nps: FormText = "6") -> Response:
    numbers = [_int(v) for v in (qualify_days, monthly_cap, referrer_points, friend_points,
                                 low_rating, low_nps)]
    try:
        if any(n is None for n in numbers):
            raise ProgramInvalid(reason=gettext("enter whole numbers."))
        q, cap, rp, fp, lr, ln = (int(n or 0) for n in numbers)
        update_program(session, admin.actor, ProgramData(
            welcome_campaign_id=welcome_campaign_id or None,
            make_good_campaign_id=make_good_campaign_id or None, qualify_days=q,
            monthly_cap=cap, referrer_points=rp, friend_points=fp, low_rating=lr, low_nps=ln))
    except OmniloopError as error:
        message = refused(session, error)
        return render(admin.request, "admin/loops/referrals.html", admin.template_values(
            "loops", program=get_program(session, admin.actor.tenant_id), referrals=[],
            campaigns=_campaigns(session, admin.actor), flash=None, error=message),
            status_code=error.status)
    return redirect_done("/admin/loops/referrals", "program_saved")


# --- short links ----------------------------------------------------------------------------


@router.get("/links")
def link_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    links = links_service.list_links(session, admin.actor)
    return render(admin.request, "admin/loops/links.html", admin.template_values(
        "loops", links=links, base=base_url(), flash=flash_message(done), error=None,
        values={}))


@router.post("/links", dependencies=[CsrfChecked])
def create_link(admin: Admin, session: SessionDep, name: FormText = "",
                target_url: FormText = "", utm_source: FormText = "",
                utm_medium: FormText = "", utm_campaign: FormText = "") -> Response:
    try:
        links_service.create_link(session, admin.actor, name=name, target_url=target_url,
                                  utm_source=utm_source, utm_medium=utm_medium,
                                  utm_campaign=utm_campaign)
    except OmniloopError as error:
        message = refused(session, error)
        return render(admin.request, "admin/loops/links.html", admin.template_values(
            "loops", links=links_service.list_links(session, admin.actor), base=base_url(),
            flash=None, error=message, values={"name": name, "target_url": target_url,
                                               "utm_source": utm_source,
                                               "utm_medium": utm_medium,
                                               "utm_campaign": utm_campaign}),
            status_code=error.status)
    return redirect_done("/admin/loops/links", "link_saved")


@router.post("/links/{link_id}/enabled", dependencies=[CsrfChecked])
def toggle_link(link_id: str, admin: Admin, session: SessionDep,
                enabled: FormText = "") -> Response:
    links_service.set_link_enabled(session, admin.actor, link_id, enabled == "1")
    return redirect_done("/admin/loops/links", "link_saved")


# --- the report -----------------------------------------------------------------------------


def _day(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        return None


@router.get("/report")
def report(admin: Admin, session: SessionDep, start: str = "", end: str = "",
           store: str = "") -> Response:
    tz = ZoneInfo(admin.tenant.timezone)
    today = to_local(utcnow(), admin.tenant.timezone).date()
    first = _day(start) or datetime.combine(today - timedelta(days=29), time())
    last = _day(end) or datetime.combine(today, time())
    if last < first:
        first, last = last, first
    start_at = first.replace(tzinfo=tz)
    end_at = (last + timedelta(days=1)).replace(tzinfo=tz)
    result = loop_report(session, admin.actor, start_at, end_at, store or None)
    return render(admin.request, "admin/loops/report.html", admin.template_values(
        "loops", report=result, start=first.date().isoformat(), end=last.date().isoformat(),
        action_labels=ACTION_LABELS,
        stores=_stores(session, admin.actor), chosen_store=store),
        status_code=status.HTTP_200_OK)
