"""Admin pages of saved message templates: the list, the editor with a live preview (the
send form's preview: the message as the signed-in staff member would get it), and deleting
one after a confirm step. Thin: the rules are in templates.py; this shows what is wrong
beside the field at fault."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, status
from fastapi.responses import Response

from omniloop.api.deps import SessionDep
from omniloop.core.errors import N_, OmniloopError
from omniloop.messaging import templates
from omniloop.messaging.errors import MessageContentInvalid, MessageTemplateInvalid
from omniloop.messaging.models import MessageTemplate, OutboxChannel
from omniloop.messaging.pages import CHANNEL_LABELS, preview_payload
from omniloop.messaging.sends import VARIABLES
from omniloop.tenancy import audit
from omniloop.tenancy.access import Permission
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, refused, register_flash
from omniloop.web.templating import render

router = APIRouter(prefix="/admin/messaging", include_in_schema=False)

audit.register_action("message_template.create", N_("Message template created"))
audit.register_action("message_template.update", N_("Message template changed"))
audit.register_action("message_template.delete", N_("Message template deleted"))
register_flash("template_created", N_("The template was saved."))
register_flash("template_saved", N_("The template was saved."))
register_flash("template_deleted", N_("The template was deleted."))

FormText = Annotated[str, Form()]
_FIELDS = ("name", "channel", "title", "subject", "text", "html")


def _form_of(template: MessageTemplate | None) -> dict[str, str]:
    if template is None:
        return dict.fromkeys(_FIELDS, "") | {"channel": "line"}
    return {"name": template.name, "channel": template.channel.value,
            "title": template.title or "", "subject": template.subject or "",
            "text": template.text, "html": template.html or ""}


def _error_of(exc: OmniloopError) -> tuple[str, str]:
    """The form field a refusal belongs beside, and its message."""
    if isinstance(exc, MessageTemplateInvalid):
        problem = exc.problem()
        return exc.field or "form", problem[:1].upper() + problem[1:]
    if isinstance(exc, MessageContentInvalid):
        return exc.field or "text", exc.localized()
    return "form", exc.localized()


def _preview(admin: AdminContext, form: dict[str, str]) -> dict[str, Any]:
    """The preview of the typed content, or what is wrong with it."""
    try:
        channel = OutboxChannel(form["channel"])
        if channel not in templates.CHANNELS:
            raise ValueError(channel)
        content = {k: form[k] for k in templates.KEYS[channel]}
        return {"payload": preview_payload(admin, channel, content, None), "count": None}
    except ValueError:
        return {"error": MessageTemplateInvalid(
            field="channel", problem=N_("a template is for LINE, e-mail or SMS.")).localized()}
    except OmniloopError as exc:
        return {"error": _error_of(exc)[1]}


def _editor(admin: AdminContext, form: dict[str, str], *,
            template: MessageTemplate | None = None, errors: dict[str, str] | None = None,
            preview: dict[str, Any] | None = None,
            status_code: int = status.HTTP_200_OK) -> Response:
    return render(admin.request, "admin/messaging/template_form.html", admin.template_values(
        "messaging", form=form, template=template, errors=errors or {}, preview=preview,
        channel_labels=CHANNEL_LABELS, channels=[c.value for c in templates.CHANNELS],
        variables=VARIABLES), status_code=status_code)


def _save(admin: AdminContext, session: SessionDep, form: dict[str, str],
          template: MessageTemplate | None, action: str) -> Response:
    if action == "preview":  # the preview button, for browsers without JavaScript
        return _editor(admin, form, template=template, preview=_preview(admin, form))
    try:
        if template is None:
            templates.create_template(
                session, admin.actor, name=form["name"], channel=form["channel"],
                text=form["text"], subject=form["subject"], html=form["html"],
                title=form["title"])
        else:
            templates.update_template(
                session, admin.actor, template.id, name=form["name"], channel=form["channel"],
                text=form["text"], subject=form["subject"], html=form["html"],
                title=form["title"])
    except OmniloopError as exc:
        refused(session, exc)
        field, message = _error_of(exc)
        return _editor(admin, form, template=template, errors={field: message},
                       status_code=exc.status)
    return redirect_done("/admin/messaging/templates",
                         "template_created" if template is None else "template_saved")


def _typed(name: str, channel: str, title: str, subject: str, text: str,
           html: str) -> dict[str, str]:
    return {"name": name, "channel": channel, "title": title, "subject": subject, "text": text,
            "html": html}


@router.get("/templates")
def templates_page(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    rows = templates.list_templates(session, admin.actor)
    return render(admin.request, "admin/messaging/templates.html", admin.template_values(
        "messaging", rows=rows, channel_labels=CHANNEL_LABELS,
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done)))


@router.get("/templates/new")
def new_template(admin: Admin) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    return _editor(admin, _form_of(None))


@router.post("/templates/new", dependencies=[CsrfChecked])
def create_template(admin: Admin, session: SessionDep, name: FormText = "",
                    channel: FormText = "line", title: FormText = "", subject: FormText = "",
                    text: FormText = "", html: FormText = "",
                    action: FormText = "save") -> Response:
    admin.actor.require(Permission.campaigns_manage)
    return _save(admin, session, _typed(name, channel, title, subject, text, html), None,
                 action)


@router.post("/templates/preview", dependencies=[CsrfChecked])
def preview_template(admin: Admin, channel: FormText = "line", title: FormText = "",
                     subject: FormText = "", text: FormText = "",
                     html: FormText = "") -> Response:
    """The live preview: the editor's script posts the typed content as it changes and
    swaps in this fragment. Reads nothing, writes nothing."""
    admin.actor.require(Permission.campaigns_read)
    preview = _preview(admin, _typed("", channel, title, subject, text, html))
    return render(admin.request, "admin/messaging/_preview.html",
                  admin.template_values("messaging", preview=preview))


@router.get("/templates/{template_id}/edit")
def edit_template(template_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    template = templates.get_template(session, admin.actor, template_id)
    form = _form_of(template)
    return _editor(admin, form, template=template, preview=_preview(admin, form))


@router.post("/templates/{template_id}/edit", dependencies=[CsrfChecked])
def save_template(template_id: str, admin: Admin, session: SessionDep, name: FormText = "",
                  channel: FormText = "line", title: FormText = "", subject: FormText = "",
                  text: FormText = "", html: FormText = "",
                  action: FormText = "save") -> Response:
    admin.actor.require(Permission.campaigns_manage)
    template = templates.get_template(session, admin.actor, template_id)
    return _save(admin, session, _typed(name, channel, title, subject, text, html), template,
                 action)


@router.get("/templates/{template_id}/delete")
def confirm_delete(template_id: str, admin: Admin, session: SessionDep) -> Response:
    """The confirm step before deleting."""
    admin.actor.require(Permission.campaigns_manage)
    template = templates.get_template(session, admin.actor, template_id)
    return render(admin.request, "admin/messaging/template_delete.html", admin.template_values(
        "messaging", template=template, channel_labels=CHANNEL_LABELS))


@router.post("/templates/{template_id}/delete", dependencies=[CsrfChecked])
def delete_template(template_id: str, admin: Admin, session: SessionDep) -> Response:
    templates.delete_template(session, admin.actor, template_id)
    return redirect_done("/admin/messaging/templates", "template_deleted")
