"""HTTP API of messaging: the outbox (status, dead letters, replay), webhook subscriptions,
sends to audiences, and phone verification. Thin: parse, call the service, shape."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import Field

from omniloop.api.deps import ApiActor, SessionDep, client_ip
from omniloop.core.clock import aware
from omniloop.core.db import get_database
from omniloop.core.schemas import RequestModel, ResponseModel, UtcDatetime
from omniloop.messaging import journeys, otp, outbox, sends, tasks, templates, webhooks
from omniloop.messaging.models import (
    MessageSend,
    OutboxChannel,
    OutboxMessage,
    OutboxStatus,
    StaffTaskStatus,
    WebhookEndpoint,
)
from omniloop.tenancy.tenants import get_tenant, get_tenant_by_slug

router = APIRouter(tags=["messaging"])


class MessageOut(ResponseModel):
    id: str
    channel: OutboxChannel
    purpose: str
    customer_id: str | None
    recipient: str
    status: OutboxStatus
    reason: str | None
    attempts: int
    last_error: str | None
    send_id: str | None
    next_attempt_at: UtcDatetime
    created_at: UtcDatetime
    sent_at: UtcDatetime | None
    opened_at: UtcDatetime | None = Field(
        description="Marketing e-mails: the first open (the tracking image or a click).")
    clicked_at: UtcDatetime | None = Field(description="Marketing e-mails: the first click.")
    clicks: int = Field(description="Marketing e-mails: clicks on its links.")

    @classmethod
    def of(cls, message: OutboxMessage) -> MessageOut:
        return cls.model_validate(message)


@router.get("/messages", summary="Messages in the outbox", operation_id="messaging-list")
def list_messages(actor: ApiActor, session: SessionDep,
                  status_: Annotated[OutboxStatus | None, Query(alias="status")] = None,
                  channel: OutboxChannel | None = None, send_id: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[MessageOut]:
    """Newest first; `status=dead` lists the dead letters."""
    return [MessageOut.of(m) for m in outbox.list_messages(
        session, actor, status=status_, channel=channel, send_id=send_id, limit=limit)]


class ReplayIn(RequestModel):
    ids: list[str] = Field(min_length=1, max_length=500)


@router.post("/messages/replay", summary="Send dead letters again",
             operation_id="messaging-replay")
def replay(body: ReplayIn, actor: ApiActor, session: SessionDep) -> dict[str, int]:
    """Only dead letters; their tries start again from one."""
    return {"replayed": outbox.replay(session, actor, body.ids)}


@router.get("/messages/stats", summary="Messages per status", operation_id="messaging-stats")
def stats(actor: ApiActor, session: SessionDep,
          send_id: str | None = None) -> dict[str, int]:
    return {s.value: n for s, n in outbox.status_counts(session, actor, send_id=send_id).items()}


# --- webhook subscriptions ----------------------------------------------------------------


class EndpointIn(RequestModel):
    url: str = Field(max_length=500, description="Where events are POSTed (http or https).")
    event_types: list[str] = Field(min_length=1, max_length=20,
                                   description=", ".join(webhooks.EVENT_TYPES))
    description: str = Field(default="", max_length=200)
    active: bool = True


class EndpointOut(ResponseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_…), shown only now.")


@router.get("/webhook-endpoints", summary="Webhook subscriptions",
            operation_id="webhooks-list")
def list_endpoints(actor: ApiActor, session: SessionDep) -> list[EndpointOut]:
    return [EndpointOut.model_validate(e) for e in webhooks.list_endpoints(session, actor)]


@router.post("/webhook-endpoints", status_code=status.HTTP_201_CREATED,
             summary="Subscribe an endpoint", operation_id="webhooks-create")
def create_endpoint(body: EndpointIn, actor: ApiActor, session: SessionDep) -> EndpointCreated:
    """Events are signed per Standard Webhooks with the returned secret."""
    endpoint, secret = webhooks.create_endpoint(session, actor, body.url, body.event_types,
                                                body.description)
    if not body.active:
        endpoint.active = False
    return EndpointCreated(**_endpoint(endpoint), secret=secret)


def _endpoint(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return EndpointOut.model_validate(endpoint).model_dump()


@router.put("/webhook-endpoints/{endpoint_id}", summary="Change a subscription",
            operation_id="webhooks-update")
def update_endpoint(endpoint_id: str, body: EndpointIn, actor: ApiActor,
                    session: SessionDep) -> EndpointOut:
    endpoint = webhooks.update_endpoint(session, actor, endpoint_id, url=body.url,
                                        event_types=body.event_types, active=body.active,
                                        description=body.description)
    return EndpointOut.model_validate(endpoint)


# --- sends --------------------------------------------------------------------------------


class AudienceIn(RequestModel):
    kind: Literal["channel", "tag", "near_store"]
    tag: str | None = Field(default=None, max_length=60)
    store_id: str | None = None
    km: float | None = Field(default=None, gt=0, le=500)


_VARIABLES_DOC = ", ".join("`{" + v + "}`" for v in sends.VARIABLES)


class ContentIn(RequestModel):
    text: str = Field(min_length=1, max_length=5000)
    subject: str | None = Field(default=None, max_length=200)
    html: str | None = Field(default=None, max_length=100_000)
    title: str | None = Field(default=None, max_length=100)


class SendIn(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    channel: Literal["line", "email", "sms"] | None = Field(
        default=None, description="Required with `content`; with `template_id`, the "
                                  "template's channel (naming another one is 422).")
    audience: AudienceIn
    content: ContentIn | None = Field(
        default=None, description="The message, with the variables " + _VARIABLES_DOC
                                  + ". Give `content` or `template_id`, not both (422 "
                                    "`content_or_template_required`).")
    template_id: str | None = Field(
        default=None, description="A saved message template to send instead of `content`. "
                                  "Its content is copied into the send: editing the template "
                                  "later does not change this send.")
    campaign_id: str | None = None
    scheduled_at: datetime | None = Field(
        default=None, description="Later: a scheduled send; without an offset, the brand's "
                                  "local time. Empty: now.")


class SendOut(ResponseModel):
    id: str
    name: str
    channel: OutboxChannel
    campaign_id: str | None
    audience: dict[str, Any]
    status: str
    scheduled_at: UtcDatetime
    audience_count: int
    holdout_count: int
    enqueued_count: int
    progress: dict[str, int] = Field(default_factory=dict,
                                     description="Messages per delivery status.")
    engagement: dict[str, int] | None = Field(
        default=None, description="E-mail sends: messages `sent`, `opened` and `clicked`, "
                                  "and `clicks` in all (one send's own page; not in lists).")


def _send_out(session: SessionDep, actor: ApiActor, send: MessageSend) -> SendOut:
    return _with_progress(send, outbox.status_counts(session, actor, send_id=send.id))


def _with_progress(send: MessageSend, counts: dict[OutboxStatus, int]) -> SendOut:
    out = SendOut.model_validate(send)
    out.progress = {s.value: n for s, n in counts.items()}
    return out


@router.post("/message-sends", status_code=status.HTTP_201_CREATED,
             summary="Send a message to an audience", operation_id="sends-create")
def create_send(body: SendIn, actor: ApiActor, session: SessionDep) -> SendOut:
    """The content is given (`content`) or copied from a saved template (`template_id`);
    exactly one of them (422 `content_or_template_required`)."""
    scheduled = None
    if body.scheduled_at is not None:
        scheduled = aware(body.scheduled_at, get_tenant(session, actor.tenant_id).timezone)
    send = sends.create_send(
        session, actor, name=body.name,
        channel=OutboxChannel(body.channel) if body.channel else None,
        audience=body.audience.model_dump(exclude_none=True),
        content=body.content.model_dump(exclude_none=True) if body.content else None,
        template_id=body.template_id, campaign_id=body.campaign_id, scheduled_at=scheduled)
    return _send_out(session, actor, send)


@router.get("/message-sends", summary="Sends, newest first", operation_id="sends-list")
def list_sends(actor: ApiActor, session: SessionDep) -> list[SendOut]:
    listed = sends.list_sends(session, actor)
    counts = outbox.status_counts_by_send(session, actor, [s.id for s in listed])
    return [_with_progress(s, counts[s.id]) for s in listed]


@router.get("/message-sends/{send_id}", summary="A send and its delivery progress",
            operation_id="sends-get")
def get_send(send_id: str, actor: ApiActor, session: SessionDep) -> SendOut:
    send = sends.get_send(session, actor, send_id)
    out = _send_out(session, actor, send)
    if send.channel is OutboxChannel.email:
        out.engagement = asdict(outbox.engagement(session, actor, send.id))
    return out


@router.post("/message-sends/{send_id}/cancel", summary="Cancel a scheduled send",
             operation_id="sends-cancel")
def cancel_send(send_id: str, actor: ApiActor, session: SessionDep) -> SendOut:
    return _send_out(session, actor, sends.cancel_send(session, actor, send_id))


# --- message templates --------------------------------------------------------------------


class TemplateIn(RequestModel):
    name: str = Field(min_length=1, max_length=120, description="Unique within the brand.")
    channel: Literal["line", "email", "sms"]
    text: str = Field(min_length=1, max_length=5000,
                      description="The message, with the variables " + _VARIABLES_DOC
                                  + "; any other `{…}` is 422 `message_content_invalid` "
                                    "with `field`. Checked against the channel's limits.")
    subject: str | None = Field(default=None, max_length=200,
                                description="E-mail: required. Ignored on other channels.")
    html: str | None = Field(default=None, max_length=100_000,
                             description="E-mail: an optional HTML part.")
    title: str | None = Field(default=None, max_length=100,
                              description="LINE: the coupon card's title when a send has a "
                                          "campaign.")


class TemplateOut(ResponseModel):
    id: str
    name: str
    channel: OutboxChannel
    text: str
    subject: str | None
    html: str | None
    title: str | None
    created_at: UtcDatetime
    created_by: str
    updated_at: UtcDatetime
    updated_by: str


@router.get("/message-templates", summary="Saved message templates",
            operation_id="message-templates-list")
def list_templates(actor: ApiActor, session: SessionDep,
                   channel: Literal["line", "email", "sms"] | None = None
                   ) -> list[TemplateOut]:
    """By name; `channel` keeps one channel's."""
    return [TemplateOut.model_validate(t) for t in templates.list_templates(
        session, actor, OutboxChannel(channel) if channel else None)]


@router.post("/message-templates", status_code=status.HTTP_201_CREATED,
             summary="Save a message template", operation_id="message-templates-create")
def create_template(body: TemplateIn, actor: ApiActor, session: SessionDep) -> TemplateOut:
    """Checked as a send's content is. A refusal is 422 with `field`:
    `message_content_invalid` (an unknown variable, or what the channel refuses) or
    `message_template_invalid` (a name in use, an e-mail without a subject)."""
    return TemplateOut.model_validate(templates.create_template(
        session, actor, **body.model_dump()))


@router.get("/message-templates/{template_id}", summary="A message template",
            operation_id="message-templates-get")
def get_template(template_id: str, actor: ApiActor, session: SessionDep) -> TemplateOut:
    return TemplateOut.model_validate(templates.get_template(session, actor, template_id))


@router.put("/message-templates/{template_id}", summary="Change a message template",
            operation_id="message-templates-update")
def update_template(template_id: str, body: TemplateIn, actor: ApiActor,
                    session: SessionDep) -> TemplateOut:
    """Sends and journeys made from it keep the content they copied."""
    return TemplateOut.model_validate(templates.update_template(
        session, actor, template_id, **body.model_dump()))


@router.delete("/message-templates/{template_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a message template", operation_id="message-templates-delete")
def delete_template(template_id: str, actor: ApiActor, session: SessionDep) -> None:
    """Sends and journeys made from it keep the content they copied."""
    templates.delete_template(session, actor, template_id)


# --- phone verification (public: the consumer pages call it) --------------------------------


class PhoneIn(RequestModel):
    phone: str = Field(min_length=6, max_length=32)


class VerificationOut(ResponseModel):
    id: str
    expires_at: UtcDatetime


class CodeIn(RequestModel):
    code: str = Field(min_length=4, max_length=10)


class VerifiedOut(ResponseModel):
    phone: str
    token: str = Field(description="Proof of the phone for 15 minutes (claim pages take it).")


@router.post("/brands/{tenant_slug}/phone-verifications", status_code=status.HTTP_201_CREATED,
             summary="Text a one-time code to a phone", operation_id="otp-start")
def start_verification(tenant_slug: str, body: PhoneIn, request: Request,
                       session: SessionDep) -> VerificationOut:
    """No API key: the brand's consumer pages call it. Limited per phone and per IP (429)."""
    tenant = get_tenant_by_slug(session, tenant_slug)
    row = otp.start(session, tenant, body.phone, client_ip(request))
    return VerificationOut(id=row.id, expires_at=row.expires_at)


@router.post("/brands/{tenant_slug}/phone-verifications/{verification_id}/check",
             summary="Check a one-time code", operation_id="otp-check")
def check_verification(tenant_slug: str, verification_id: str, body: CodeIn) -> VerifiedOut:
    """At most 5 checks per code; a wrong or expired code is 400
    `verification_code_invalid`."""
    # Its own unit of work: the counted attempt commits even when the code is wrong.
    with get_database().unit_of_work() as session:
        tenant = get_tenant_by_slug(session, tenant_slug)
        result = otp.check(session, tenant.id, verification_id, body.code)
    otp.raise_if_failed(result)
    assert result.phone is not None
    assert result.token is not None
    return VerifiedOut(phone=result.phone, token=result.token)


# --- journeys -----------------------------------------------------------------------------

_TRIGGERS_DOC = "; ".join(f"`{k}`: {v}" for k, v in journeys.TRIGGERS.items())


class JourneyIn(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    trigger: str = Field(description="What starts the journey. " + _TRIGGERS_DOC + ". "
                         "Each customer enters once per occurrence (the order, the follow, the "
                         "feedback, the birthday's year, the coupon, the points' expiry date, "
                         "the last order before 60 days without a visit). `birthday`, "
                         "`coupon_expiring`, `points_expiring` and `no_visit` are found by a "
                         "daily scan (04:00 in the brand's time zone, or `omniloop journeys "
                         "scan`).")
    wait_minutes: int = Field(default=0, ge=0, le=journeys.MAX_WAIT_MINUTES,
                              description="How long to wait after the trigger (at most 90 "
                                          "days).")
    condition: dict[str, str] = Field(
        default_factory=dict,
        description='Checked after the wait: {} (everyone), {"consent": "line"|"email"|"sms"}, '
                    '{"tag": "vip"}, or both.')
    actions: list[dict[str, Any]] = Field(
        min_length=1, max_length=journeys.MAX_ACTIONS,
        description='Done in order, each logged on the run: '
                    '{"kind": "message", "channel": "line"|"email"|"sms", "text": "…{name}…", '
                    '"subject": "(e-mail)"} or {"kind": "message", "template_id": "…"} (a copy '
                    'of a saved template\'s channel, subject and text is stored), '
                    '{"kind": "coupon", "campaign_id": "…"} (into the '
                    'wallet), {"kind": "points", "points": 50}, {"kind": "task", "title": '
                    '"Call {name}"} (a staff task for the customer\'s home store).')


class JourneyOut(ResponseModel):
    id: str
    name: str
    trigger: str
    wait_minutes: int
    condition: dict[str, Any]
    actions: list[dict[str, Any]]
    active: bool
    runs: dict[str, int] = Field(default_factory=dict,
                                 description="Runs per state: waiting, done, skipped "
                                             "(condition not met), failed (an action refused).")


@router.get("/journeys", summary="Journeys with their run counts", operation_id="journeys-list")
def list_journeys(actor: ApiActor, session: SessionDep) -> list[JourneyOut]:
    return [JourneyOut(**JourneyOut.model_validate(j).model_dump(exclude={"runs"}), runs=c)
            for j, c in journeys.list_journeys(session, actor)]


@router.post("/journeys", status_code=status.HTTP_201_CREATED, summary="Create a journey",
             operation_id="journeys-create")
def create_journey(body: JourneyIn, actor: ApiActor, session: SessionDep) -> JourneyOut:
    """Each customer enters once per trigger occurrence; every step is logged on the run.
    A definition that cannot run is `422 journey_invalid`, with `field` naming the part at
    fault (e.g. `actions.1.campaign_id`)."""
    journey = journeys.create_journey(session, actor, name=body.name, trigger=body.trigger,
                                      wait_minutes=body.wait_minutes,
                                      condition=dict(body.condition), actions=body.actions)
    return JourneyOut.model_validate(journey)


@router.put("/journeys/{journey_id}", summary="Change a journey",
            operation_id="journeys-update")
def update_journey(journey_id: str, body: JourneyIn, actor: ApiActor,
                   session: SessionDep) -> JourneyOut:
    """A new definition. Runs still waiting take it when they are due; who entered stays
    entered (no one enters twice for the same occurrence)."""
    journey = journeys.update_journey(session, actor, journey_id, name=body.name,
                                      trigger=body.trigger, wait_minutes=body.wait_minutes,
                                      condition=dict(body.condition), actions=body.actions)
    counts = dict(journeys.list_journeys(session, actor))[journey]
    return JourneyOut(**JourneyOut.model_validate(journey).model_dump(exclude={"runs"}),
                      runs=counts)


class StaffTaskOut(ResponseModel):
    id: str
    journey_id: str
    customer_id: str
    store_id: str | None
    title: str
    status: StaffTaskStatus
    created_at: UtcDatetime
    done_at: UtcDatetime | None
    done_by: str | None


@router.get("/staff-tasks", summary="Staff tasks created by journeys",
            operation_id="staff-tasks-list")
def list_staff_tasks(actor: ApiActor, session: SessionDep,
                     status_: Annotated[StaffTaskStatus | None, Query(alias="status")] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[StaffTaskOut]:
    """Newest first; a key bound to stores sees those stores' tasks."""
    return [StaffTaskOut.model_validate(t)
            for t in tasks.list_tasks(session, actor, status_, limit=limit)]


@router.post("/staff-tasks/{task_id}/done", summary="Mark a staff task done",
             operation_id="staff-tasks-done")
def staff_task_done(task_id: str, actor: ApiActor, session: SessionDep) -> StaffTaskOut:
    """Done once; marking it again changes nothing."""
    return StaffTaskOut.model_validate(tasks.mark_done(session, actor, task_id))
