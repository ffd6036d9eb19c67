"""Admin pages of journeys and their staff tasks: the list with run counts per status,
templates, the editor (a new journey, from scratch or from a template, and changes to one),
a journey's recent runs with their logged steps, and the tasks journeys create. Thin: the
rules are in journeys.py and tasks.py; this reads the typed form and shows what is wrong
beside the field at fault."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from omniloop.api.deps import SessionDep
from omniloop.campaigns.service import list_campaigns
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.messaging import journeys, tasks
from omniloop.messaging.models import Journey, StaffTaskStatus
from omniloop.messaging.templates import content_of, list_templates
from omniloop.tenancy import audit
from omniloop.tenancy.access import Permission
from omniloop.tenancy.stores import list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import (
    FieldErrors,
    flash_message,
    redirect_done,
    refused,
    register_flash,
)
from omniloop.web.templating import render

router = APIRouter(prefix="/admin/messaging", include_in_schema=False)

audit.register_action("journey.create", N_("Journey created"))
audit.register_action("journey.update", N_("Journey switched on or off"))
audit.register_action("journey.edit", N_("Journey changed"))
register_flash("journey_created", N_("The journey was created."))
register_flash("journey_saved", N_("The journey was saved."))
register_flash("task_done", N_("The task is marked done."))
RUN_LABELS = {"waiting": N_("Waiting"), "done": N_("Done"), "skipped": N_("Condition not met"),
              "failed": N_("An action failed")}
CHANNEL_LABELS = {"line": N_("LINE"), "email": N_("E-mail"), "sms": N_("SMS")}
WAIT_UNITS = {"minutes": (N_("minutes"), 1), "hours": (N_("hours"), 60),
              "days": (N_("days"), 60 * 24)}
TASK_LABELS = {StaffTaskStatus.open: N_("Open"), StaffTaskStatus.done: N_("Done")}
WAIT_TEXTS = {"days": N_("%(count)s d"), "hours": N_("%(count)s h"),
              "minutes": N_("%(count)s min")}


def wait_text(minutes: int) -> str:
    """A wait as people say it: 1440 → "1 d" (天), 90 → "90 min"."""
    for unit in ("days", "hours"):
        size = WAIT_UNITS[unit][1]
        if minutes and minutes % size == 0:
            return gettext(WAIT_TEXTS[unit]) % {"count": minutes // size}
    return gettext(WAIT_TEXTS["minutes"]) % {"count": minutes}

FormText = Annotated[str, Form()]
_CUSTOMER_PAGE = re.compile(r"/admin/customers/[0-9A-Za-z]{1,40}")


# --- the list and a journey's runs -------------------------------------------------------------


@router.get("/journeys")
def journeys_page(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    rows = journeys.list_journeys(session, admin.actor)
    return render(admin.request, "admin/messaging/journeys.html", admin.template_values(
        "messaging", rows=rows, templates=journeys.TEMPLATES, triggers=journeys.TRIGGERS,
        needs_choices={k for k in journeys.TEMPLATES if journeys.needs_choices(k)},
        run_labels=RUN_LABELS, can_manage=admin.actor.can(Permission.campaigns_manage),
        wait_text=wait_text,
        open_tasks=tasks.task_counts(session, admin.actor)[StaffTaskStatus.open],
        flash=flash_message(done)))


@router.post("/journeys/from-template", dependencies=[CsrfChecked])
def journey_from_template(admin: Admin, session: SessionDep,
                          template: FormText = "") -> Response:
    if journeys.needs_choices(template):  # a campaign to pick first: the editor
        return RedirectResponse(f"/admin/messaging/journeys/new?template={template}",
                                status_code=status.HTTP_303_SEE_OTHER)
    journeys.from_template(session, admin.actor, template)
    return redirect_done("/admin/messaging/journeys", "journey_created")


@router.post("/journeys/{journey_id}/toggle", dependencies=[CsrfChecked])
def toggle_journey(journey_id: str, admin: Admin, session: SessionDep,
                   active: FormText = "") -> Response:
    journeys.set_active(session, admin.actor, journey_id, active == "1")
    return RedirectResponse("/admin/messaging/journeys", status_code=status.HTTP_303_SEE_OTHER)


# --- the editor --------------------------------------------------------------------------------


class JourneyForm(BaseModel):
    """The editor as posted: strings, and one list per column of the actions table."""

    name: str = ""
    trigger: str = ""
    wait_value: str = "0"
    wait_unit: str = "minutes"
    consent: str = ""
    tag: str = ""
    action_kind: list[str] = []
    action_channel: list[str] = []
    action_subject: list[str] = []
    action_text: list[str] = []
    action_campaign: list[str] = []
    action_points: list[str] = []
    action_title: list[str] = []
    action_template: list[str] = []

    def action_rows(self) -> list[dict[str, str]]:
        """Exactly MAX_ACTIONS rows, as typed (unused rows have no kind)."""
        columns = {"kind": self.action_kind, "channel": self.action_channel,
                   "subject": self.action_subject, "text": self.action_text,
                   "campaign_id": self.action_campaign, "points": self.action_points,
                   "title": self.action_title, "template_id": self.action_template}
        return [{key: (values[i] if i < len(values) else "") for key, values in columns.items()}
                for i in range(journeys.MAX_ACTIONS)]

    @classmethod
    def of(cls, spec: dict[str, Any]) -> JourneyForm:
        """The form showing a stored (or template) definition."""
        minutes = int(spec["wait_minutes"])
        unit = next((u for u in ("days", "hours") if minutes and
                     minutes % WAIT_UNITS[u][1] == 0), "minutes")
        actions = list(spec["actions"])

        def column(key: str) -> list[str]:
            return [str(a.get(key, "") if key != "channel" or a["kind"] == "message" else "line")
                    for a in actions]

        return cls(name=str(spec["name"]), trigger=str(spec["trigger"]),
                   wait_value=str(minutes // WAIT_UNITS[unit][1]), wait_unit=unit,
                   consent=str(spec["condition"].get("consent", "")),
                   tag=str(spec["condition"].get("tag", "")),
                   action_kind=column("kind"), action_channel=column("channel"),
                   action_subject=column("subject"), action_text=column("text"),
                   action_campaign=column("campaign_id"), action_points=column("points"),
                   action_title=column("title"))


def parse_journey(form: JourneyForm) -> tuple[dict[str, Any] | None, list[int], dict[str, str]]:
    """The form as `create_journey`'s arguments (or None), the form row of each action kept,
    and a message per field."""
    read = FieldErrors()
    if not form.name.strip():
        read.fail("name", N_("Name the journey."))
    elif len(form.name.strip()) > 120:
        read.fail("name", N_("A name is at most 120 characters."))
    if form.trigger not in journeys.TRIGGERS:
        read.fail("trigger", N_("Choose a trigger from the list."))
    unit = WAIT_UNITS.get(form.wait_unit, WAIT_UNITS["minutes"])[1]
    high = journeys.MAX_WAIT_MINUTES // unit
    wait = read.whole("wait_minutes", form.wait_value or "0", 0, high) or 0
    condition: dict[str, Any] = {}
    if form.consent:
        if form.consent not in journeys.CONSENT_CHANNELS:
            read.fail("condition.consent", N_("Choose a channel from the list."))
        condition["consent"] = form.consent
    if form.tag.strip():
        condition["tag"] = form.tag.strip()
    actions: list[dict[str, Any]] = []
    rows: list[int] = []
    for index, row in enumerate(form.action_rows()):
        kind = row["kind"]
        if not kind:
            continue
        action: dict[str, Any] = {"kind": kind}
        if kind == "message" and row["template_id"] and not row["text"].strip():
            # A template picked, the text left empty (no JavaScript to fill it): the
            # service copies the template's channel, subject and text into the journey.
            action["template_id"] = row["template_id"]
        elif kind == "message":
            action |= {"channel": row["channel"] or "line", "text": row["text"]}
            if row["channel"] == "email":
                action["subject"] = row["subject"]
        elif kind == "coupon":
            action["campaign_id"] = row["campaign_id"]
        elif kind == "points":
            action["points"] = read.whole(f"actions.{index}.points", row["points"], 1,
                                          100_000) or 0
        elif kind == "task":
            action["title"] = row["title"]
        else:
            read.fail(f"actions.{index}.kind", N_("Choose what the action does."))
        actions.append(action)
        rows.append(index)
    if not actions:
        read.fail("actions", N_("Add at least one action."))
    if read.errors:
        return None, rows, read.errors
    return ({"name": form.name, "trigger": form.trigger, "wait_minutes": wait * unit,
             "condition": condition, "actions": actions}, rows, {})


def _error_of(exc: journeys.JourneyInvalid, rows: list[int]) -> tuple[str, str]:
    """The form field of a service refusal: "actions.<k>.text" names the k-th action kept,
    which is row rows[k] of the form."""
    field = exc.field or "form"
    parts = field.split(".")
    if parts[0] == "actions" and len(parts) >= 2 and parts[1].isdigit() \
            and int(parts[1]) < len(rows):
        parts[1] = str(rows[int(parts[1])])
        field = ".".join(parts)
    if field == "condition":
        field = "form"
    message = exc.problem()
    return field, message[:1].upper() + message[1:]


def _editor(admin: AdminContext, session: SessionDep, form: JourneyForm, *,
            journey: Journey | None = None, errors: dict[str, str] | None = None,
            status_code: int = status.HTTP_200_OK) -> Response:
    saved = list_templates(session, admin.actor)
    return render(admin.request, "admin/messaging/journey_form.html", admin.template_values(
        "messaging", form=form, rows=form.action_rows(), journey=journey, errors=errors or {},
        triggers=journeys.TRIGGERS, action_kinds=journeys.ACTION_KINDS,
        channel_labels=CHANNEL_LABELS, wait_units=WAIT_UNITS,
        campaigns=list_campaigns(session, admin.actor, limit=100), templates=saved,
        template_data={t.id: {"channel": t.channel.value, **content_of(t)} for t in saved}),
        status_code=status_code)


def _save(admin: AdminContext, session: SessionDep, form: JourneyForm,
          journey: Journey | None) -> Response:
    spec, rows, errors = parse_journey(form)
    if spec is None:
        return _editor(admin, session, form, journey=journey, errors=errors,
                       status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        if journey is None:
            saved = journeys.create_journey(session, admin.actor, **spec)
        else:
            saved = journeys.update_journey(session, admin.actor, journey.id, **spec)
    except journeys.JourneyInvalid as exc:
        session.rollback()
        field, message = _error_of(exc, rows)
        return _editor(admin, session, form, journey=journey, errors={field: message},
                       status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except OmniloopError as exc:
        message = refused(session, exc)
        return _editor(admin, session, form, journey=journey, errors={"form": message},
                       status_code=exc.status)
    return redirect_done(f"/admin/messaging/journeys/{saved.id}",
                         "journey_created" if journey is None else "journey_saved")


@router.get("/journeys/new")
def new_journey(admin: Admin, session: SessionDep, template: str | None = None) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    if template:
        form = JourneyForm.of(journeys.template_spec(template))
    else:
        form = JourneyForm(trigger="first_purchase", action_kind=["message"],
                           action_channel=["line"])
    return _editor(admin, session, form)


@router.post("/journeys/new", dependencies=[CsrfChecked])
def create_journey(admin: Admin, session: SessionDep,
                   form: Annotated[JourneyForm, Form()]) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    return _save(admin, session, form, None)


@router.get("/journeys/{journey_id}/edit")
def edit_journey(journey_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    journey = journeys.get_journey(session, admin.actor, journey_id)
    form = JourneyForm.of({"name": journey.name, "trigger": journey.trigger,
                           "wait_minutes": journey.wait_minutes,
                           "condition": journey.condition, "actions": journey.actions})
    return _editor(admin, session, form, journey=journey)


@router.post("/journeys/{journey_id}/edit", dependencies=[CsrfChecked])
def save_journey(journey_id: str, admin: Admin, session: SessionDep,
                 form: Annotated[JourneyForm, Form()]) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    journey = journeys.get_journey(session, admin.actor, journey_id)
    return _save(admin, session, form, journey)


@router.get("/journeys/{journey_id}")
def journey_detail(journey_id: str, admin: Admin, session: SessionDep,
                   done: str | None = None) -> Response:
    found = [(j, c) for j, c in journeys.list_journeys(session, admin.actor) if j.id == journey_id]
    if not found:
        raise journeys.JourneyNotFound()
    journey, counts = found[0]
    runs = journeys.recent_runs(session, admin.actor, journey.id)
    campaigns = {c.id: c.name for c in list_campaigns(session, admin.actor, limit=200)}
    return render(admin.request, "admin/messaging/journey.html", admin.template_values(
        "messaging", journey=journey, counts=counts, runs=runs, triggers=journeys.TRIGGERS,
        run_labels=RUN_LABELS, action_kinds=journeys.ACTION_KINDS, wait_text=wait_text,
        channel_labels=CHANNEL_LABELS, campaigns=campaigns,
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done)))


# --- staff tasks -------------------------------------------------------------------------------


@router.get("/tasks")
def tasks_page(admin: Admin, session: SessionDep, done: str | None = None,
               state: str | None = None) -> Response:
    chosen = (StaffTaskStatus(state) if state in {s.value for s in StaffTaskStatus}
              else StaffTaskStatus.open)
    rows = tasks.list_tasks(session, admin.actor, chosen)
    # Cashiers and store staff see their tasks here, not the messaging pages they cannot open.
    sees_messaging = admin.actor.can(Permission.campaigns_read)
    names = {j.id: j.name for j, _ in journeys.list_journeys(session, admin.actor)} \
        if sees_messaging else {}
    return render(admin.request, "admin/messaging/tasks.html", admin.template_values(
        "messaging", rows=rows, state=chosen, counts=tasks.task_counts(session, admin.actor),
        sees_messaging=sees_messaging,
        task_labels=TASK_LABELS, journey_names=names,
        store_names={s.id: s.name for s in list_stores(session, admin.actor)},
        can_mark=admin.actor.can(Permission.customers_write), flash=flash_message(done)))


@router.post("/tasks/{task_id}/done", dependencies=[CsrfChecked])
def task_done(task_id: str, admin: Admin, session: SessionDep,
              back: FormText = "") -> Response:
    tasks.mark_done(session, admin.actor, task_id)
    # Back where the button was: the task list, or the customer's 360 page.
    target = back if _CUSTOMER_PAGE.fullmatch(back) else "/admin/messaging/tasks"
    return redirect_done(target, "task_done")
