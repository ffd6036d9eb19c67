"""Admin pages of messaging: overview (delivery stats, sends), a new send with preview,
a send's per-recipient status, messages and dead letters (replay), channel settings and
sending rules, webhook subscriptions. Thin: the services hold the rules. Journeys and staff
tasks have theirs in journey_pages.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from omniloop.analytics.segments import list_segments
from omniloop.api.deps import SessionDep
from omniloop.campaigns.models import Campaign
from omniloop.core.clock import aware
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.settings import get_settings
from omniloop.messaging import channels, outbox, sends, templates, webhooks
from omniloop.messaging.errors import MessageContentInvalid
from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus
from omniloop.tenancy import audit
from omniloop.tenancy.access import Permission
from omniloop.tenancy.stores import list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, refused, register_flash
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin/messaging", include_in_schema=False)
register(NavItem("messaging", N_("Messaging"), "/admin/messaging", Permission.campaigns_read,
                 8))
register_flash("send_created", N_("The send was created."))
register_flash("send_cancelled", N_("The scheduled send was cancelled."))
register_flash("replayed", N_("The messages will be sent again."))
register_flash("channel_saved", N_("Channel settings saved."))
register_flash("rules_saved", N_("Sending rules saved."))
audit.register_action("messaging.channel", N_("Messaging channel changed"))
audit.register_action("messaging.settings", N_("Sending rules changed"))
audit.register_action("messaging.replay", N_("Dead letters sent again"))
audit.register_action("message_send.create", N_("Message send created"))
audit.register_action("message_send.cancel", N_("Message send cancelled"))
audit.register_action("webhook.create", N_("Webhook endpoint added"))
audit.register_action("webhook.update", N_("Webhook endpoint changed"))

CHANNEL_LABELS = {OutboxChannel.line: N_("LINE"), OutboxChannel.email: N_("E-mail"),
                  OutboxChannel.sms: N_("SMS"), OutboxChannel.webhook: N_("Webhook")}
STATUS_LABELS = {OutboxStatus.pending: N_("Waiting"), OutboxStatus.sending: N_("Sending"),
                 OutboxStatus.sent: N_("Sent"), OutboxStatus.skipped: N_("Skipped"),
                 OutboxStatus.dead: N_("Failed")}
STATUS_BADGES = {OutboxStatus.pending: "info", OutboxStatus.sending: "info",
                 OutboxStatus.sent: "ok", OutboxStatus.skipped: "off",
                 OutboxStatus.dead: "danger"}
REASON_LABELS = {"no_consent": N_("No consent"), "frequency_cap": N_("Weekly cap reached"),
                 "failed": N_("Delivery failed")}
AUDIENCE_LABELS = {"channel": N_("Everyone who agreed to the channel"),
                   "tag": N_("Customers with a tag"), "near_store": N_("Near a store"),
                   "segment": N_("A saved RFM segment")}

FormText = Annotated[str, Form()]
FormCheck = Annotated[str | None, Form()]


def _labels() -> dict[str, Any]:
    return {"channel_labels": CHANNEL_LABELS, "status_labels": STATUS_LABELS,
            "status_badges": STATUS_BADGES, "reason_labels": REASON_LABELS,
            "audience_labels": AUDIENCE_LABELS}


@router.get("")
def overview(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    actor = admin.actor
    actor.require(Permission.campaigns_read)
    by_channel: dict[OutboxChannel, dict[OutboxStatus, int]] = {
        c: dict.fromkeys(OutboxStatus, 0) for c in OutboxChannel}
    for channel, state, count in session.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count())
            .where(OutboxMessage.tenant_id == actor.tenant_id)
            .group_by(OutboxMessage.channel, OutboxMessage.status)):
        by_channel[OutboxChannel(channel)][OutboxStatus(state)] = int(count)
    send_list = sends.list_sends(session, actor, limit=50)
    progress = {send_id: {k.value: n for k, n in counts.items()} for send_id, counts in
                outbox.status_counts_by_send(session, actor, [s.id for s in send_list]).items()}
    return render(admin.request, "admin/messaging/overview.html", admin.template_values(
        "messaging", by_channel=by_channel, sends=send_list, progress=progress,
        can_manage=actor.can(Permission.campaigns_manage), flash=flash_message(done),
        **_labels()))


# --- a new send, with preview -------------------------------------------------------------


def preview_payload(admin: AdminContext, channel: OutboxChannel, content: dict[str, Any],
                    campaign_id: str | None) -> dict[str, Any]:
    """The message as the signed-in staff member would get it (the send form's preview and
    the template editor's). Refused content raises as a send would."""
    clean = sends.check_content(channel, content)
    base = get_settings().base_url.rstrip("/")
    sample = {"name": admin.staff.name, "claim_url": f"{base}/c/{admin.tenant.slug}/"
              f"claim/{campaign_id or 'CAMPAIGN'}", "wallet_url": f"{base}/c/…/wallet",
              "unsubscribe_url": f"{base}/u/…"}
    return sends.render(channel, clean, sample, has_campaign=bool(campaign_id))


def _send_form_page(admin: AdminContext, session: SessionDep, form: dict[str, str], *,
                    error: str | None = None, preview: dict[str, Any] | None = None,
                    status_code: int = status.HTTP_200_OK) -> Response:
    campaigns = list(session.scalars(select(Campaign).where(
        Campaign.tenant_id == admin.tenant.id).order_by(Campaign.created_at.desc()).limit(100)))
    try:
        saved_segments = list_segments(session, admin.actor)
    except OmniloopError:  # segments are brand-wide; a store-bound actor has none to pick
        saved_segments = []
    saved = templates.list_templates(session, admin.actor)
    return render(admin.request, "admin/messaging/send_form.html", admin.template_values(
        "messaging", form=form, error=error, preview=preview, campaigns=campaigns,
        stores=list_stores(session, admin.actor), segments=saved_segments,
        variables=sends.VARIABLES, templates=saved,
        template_data={t.id: {"channel": t.channel.value, **templates.content_of(t)}
                       for t in saved}, **_labels()), status_code=status_code)


_SEND_FIELDS = ("name", "channel", "audience", "tag", "store_id", "km", "segment_id",
                "campaign_id", "template_id",
                "title", "subject", "text", "html", "scheduled_at")


@router.get("/sends/new")
def new_send(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_manage)
    form = dict.fromkeys(_SEND_FIELDS, "") | {"channel": "line", "audience": "channel"}
    return _send_form_page(admin, session, form)


@router.post("/sends/new", dependencies=[CsrfChecked])
def create_send(admin: Admin, session: SessionDep, name: FormText = "",
                channel: FormText = "line", audience: FormText = "channel", tag: FormText = "",
                store_id: FormText = "", km: FormText = "", segment_id: FormText = "",
                campaign_id: FormText = "", template_id: FormText = "",
                title: FormText = "", subject: FormText = "", text: FormText = "",
                html: FormText = "", scheduled_at: FormText = "",
                action: FormText = "send") -> Response:
    admin.actor.require(Permission.campaigns_manage)
    form = {"name": name.strip(), "channel": channel, "audience": audience, "tag": tag.strip(),
            "store_id": store_id, "km": km.strip(), "segment_id": segment_id,
            "campaign_id": campaign_id, "template_id": template_id,
            "title": title, "subject": subject, "text": text, "html": html,
            "scheduled_at": scheduled_at}
    try:
        if template_id and not text.strip():
            # "Start from a template" without JavaScript: the template fills the message
            # (the page's script does it as soon as one is chosen); the send keeps a copy.
            chosen = templates.get_template(session, admin.actor, template_id)
            form |= dict.fromkeys(("title", "subject", "html"), "") | {
                "channel": chosen.channel.value, **templates.content_of(chosen)}
            channel, title, subject, text, html = (form[k] for k in (
                "channel", "title", "subject", "text", "html"))
            if action != "preview":
                return _send_form_page(admin, session, form)
        out_channel = OutboxChannel(channel)
        content = {"text": text, "subject": subject, "html": html, "title": title}
        audience_spec: dict[str, Any] = {"kind": audience, "tag": tag.strip(),
                                         "store_id": store_id, "km": km.strip() or None,
                                         "segment_id": segment_id}
        if action == "preview":
            rendered = preview_payload(admin, out_channel, content, campaign_id or None)
            count = len(sends.audience_members(session, admin.actor, out_channel,
                                               audience_spec))
            return _send_form_page(admin, session, form, preview={
                "payload": rendered, "count": count})
        when: datetime | None = None
        if scheduled_at.strip():
            try:
                when = aware(datetime.fromisoformat(scheduled_at.strip()),
                             admin.tenant.timezone)
            except ValueError:
                raise MessageContentInvalid(problem="the time is not a date and time.") \
                    from None
        send = sends.create_send(session, admin.actor, name=name, channel=out_channel,
                                 audience=audience_spec, content=content,
                                 campaign_id=campaign_id or None, scheduled_at=when)
    except ValueError:
        session.rollback()
        return _send_form_page(admin, session, form, error="channel",
                               status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except OmniloopError as exc:
        message = refused(session, exc)
        return _send_form_page(admin, session, form, error=message, status_code=exc.status)
    return redirect_done(f"/admin/messaging/sends/{send.id}", "send_created")


@router.get("/sends/{send_id}")
def send_detail(send_id: str, admin: Admin, session: SessionDep,
                done: str | None = None) -> Response:
    send = sends.get_send(session, admin.actor, send_id)
    counts = outbox.status_counts(session, admin.actor, send_id=send.id)
    recipients = outbox.list_messages(session, admin.actor, send_id=send.id, limit=200)
    engagement = (outbox.engagement(session, admin.actor, send.id)
                  if send.channel is OutboxChannel.email else None)
    return render(admin.request, "admin/messaging/send.html", admin.template_values(
        "messaging", send=send, counts=counts, recipients=recipients, engagement=engagement,
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done),
        **_labels()))


@router.post("/sends/{send_id}/cancel", dependencies=[CsrfChecked])
def cancel_send(send_id: str, admin: Admin, session: SessionDep) -> Response:
    sends.cancel_send(session, admin.actor, send_id)
    return redirect_done(f"/admin/messaging/sends/{send_id}", "send_cancelled")


# --- messages and dead letters ------------------------------------------------------------


@router.get("/messages")
def messages(admin: Admin, session: SessionDep, done: str | None = None,
             state: str | None = None) -> Response:
    chosen = OutboxStatus(state) if state in {s.value for s in OutboxStatus} else None
    rows = outbox.list_messages(session, admin.actor, status=chosen, limit=200)
    return render(admin.request, "admin/messaging/messages.html", admin.template_values(
        "messaging", rows=rows, state=chosen, states=list(OutboxStatus),
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash_message(done),
        **_labels()))


@router.post("/messages/replay", dependencies=[CsrfChecked])
def replay(admin: Admin, session: SessionDep,
           ids: Annotated[list[str] | None, Form()] = None) -> Response:
    if ids:
        outbox.replay(session, admin.actor, ids)
    # Back to the failed list (now without the replayed ones), with the notice.
    return RedirectResponse("/admin/messaging/messages?state=dead&done=replayed",
                            status_code=status.HTTP_303_SEE_OTHER)


# --- settings -----------------------------------------------------------------------------


def _settings_page(admin: AdminContext, session: SessionDep, *, error: str | None = None,
                   error_for: str | None = None, done: str | None = None,
                   status_code: int = status.HTTP_200_OK) -> Response:
    configs = channels.channel_summary(session, admin.actor)
    rules = channels.rules_of(session, admin.tenant.id)
    campaigns = list(session.scalars(select(Campaign).where(
        Campaign.tenant_id == admin.tenant.id).order_by(Campaign.created_at.desc()).limit(100)))
    webhook_url = f"{get_settings().base_url.rstrip('/')}/webhooks/line/{admin.tenant.slug}"
    return render(admin.request, "admin/messaging/settings.html", admin.template_values(
        "messaging", configs=configs, rules=rules, campaigns=campaigns, error=error,
        error_for=error_for, webhook_url=webhook_url, flash=flash_message(done),
        can_manage=admin.actor.can(Permission.campaigns_manage), **_labels()),
        status_code=status_code)


@router.get("/settings")
def settings_page(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    return _settings_page(admin, session, done=done)


@router.post("/settings/rules", dependencies=[CsrfChecked])
def save_rules(admin: Admin, session: SessionDep, quiet_start: FormText = "",
               quiet_end: FormText = "", weekly_cap: FormText = "", welcome_text: FormText = "",
               welcome_campaign_id: FormText = "", otp_required: FormCheck = None) -> Response:
    try:
        cap = int(weekly_cap.strip() or "-1")
    except ValueError:
        cap = -1
    try:
        channels.save_rules(session, admin.actor, quiet_start=quiet_start.strip(),
                            quiet_end=quiet_end.strip(), weekly_cap=cap,
                            welcome_text=welcome_text.strip(),
                            welcome_campaign_id=welcome_campaign_id or None,
                            otp_required=otp_required is not None)
    except OmniloopError as exc:
        return _settings_page(admin, session, error=refused(session, exc), error_for="rules",
                              status_code=exc.status)
    return redirect_done("/admin/messaging/settings", "rules_saved")


@router.post("/settings/channel/{channel}", dependencies=[CsrfChecked])
def save_channel(channel: str, admin: Admin, session: SessionDep, enabled: FormCheck = None,
                 channel_access_token: FormText = "", channel_secret: FormText = "",
                 host: FormText = "", port: FormText = "", from_address: FormText = "",
                 security: FormText = "starttls", username: FormText = "",
                 password: FormText = "", url: FormText = "", token: FormText = "") -> Response:
    try:
        chosen = OutboxChannel(channel)
        channels.save_channel(
            session, admin.actor, chosen,
            {"host": host, "port": port, "from_address": from_address, "security": security,
             "username": username, "url": url},
            {"channel_access_token": channel_access_token, "channel_secret": channel_secret,
             "password": password, "token": token}, enabled=enabled is not None)
    except ValueError:
        return _settings_page(admin, session, error="?", error_for=channel,
                              status_code=status.HTTP_404_NOT_FOUND)
    except OmniloopError as exc:
        return _settings_page(admin, session, error=refused(session, exc), error_for=channel,
                              status_code=exc.status)
    return redirect_done("/admin/messaging/settings", "channel_saved")


# --- webhook subscriptions ----------------------------------------------------------------


def _webhooks_page(admin: AdminContext, session: SessionDep, *, error: str | None = None,
                   created: tuple[str, str] | None = None, form: dict[str, Any] | None = None,
                   status_code: int = status.HTTP_200_OK) -> Response:
    return render(admin.request, "admin/messaging/webhooks.html", admin.template_values(
        "messaging", endpoints=webhooks.list_endpoints(session, admin.actor),
        event_types=webhooks.EVENT_TYPES, error=error, created=created,
        form=form or {"url": "", "event_types": [], "description": ""}),
        status_code=status_code)


@router.get("/webhooks")
def webhooks_page(admin: Admin, session: SessionDep) -> Response:
    return _webhooks_page(admin, session)


@router.post("/webhooks", dependencies=[CsrfChecked])
def create_webhook(admin: Admin, session: SessionDep, url: FormText = "",
                   description: FormText = "",
                   event_types: Annotated[list[str] | None, Form()] = None) -> Response:
    form = {"url": url, "event_types": event_types or [], "description": description}
    try:
        endpoint, secret = webhooks.create_endpoint(session, admin.actor, url,
                                                    event_types or [], description)
    except OmniloopError as exc:
        return _webhooks_page(admin, session, error=refused(session, exc), form=form,
                              status_code=exc.status)
    # The secret is shown this once (post, no redirect), like an API key.
    return _webhooks_page(admin, session, created=(endpoint.url, secret),
                          status_code=status.HTTP_201_CREATED)


@router.post("/webhooks/{endpoint_id}/toggle", dependencies=[CsrfChecked])
def toggle_webhook(endpoint_id: str, admin: Admin, session: SessionDep) -> Response:
    endpoint = webhooks.get_endpoint(session, admin.actor, endpoint_id)
    webhooks.update_endpoint(session, admin.actor, endpoint.id, url=endpoint.url,
                             event_types=list(endpoint.event_types),
                             active=not endpoint.active, description=endpoint.description)
    return RedirectResponse("/admin/messaging/webhooks", status_code=status.HTTP_303_SEE_OTHER)
