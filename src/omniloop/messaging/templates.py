"""Saved message templates: content a marketer writes once and starts sends and journey
messages from.

A template holds a channel (LINE, e-mail, SMS) and the content a send takes: the text, the
subject and an optional HTML part for e-mail, a card title for LINE. Its text fields may use
the send variables (`sends.VARIABLES`); they are checked when saved exactly as a send's
content is (`sends.check_content`: unknown variables, then the channel's own limits through
`service.payload_for`), so a template that saves is one that sends.

Using a template **copies** its content (`content_of`) into the send or the journey action:
editing or deleting the template later changes no send made from it and no journey that
copied it; what went out stays on each message in the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.messaging.errors import MessageTemplateInvalid, MessageTemplateNotFound
from omniloop.messaging.models import MessageTemplate, OutboxChannel
from omniloop.messaging.sends import check_content
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

CHANNELS = (OutboxChannel.line, OutboxChannel.email, OutboxChannel.sms)
MAX_NAME = 120
# The content keys each channel keeps (the others are dropped when saved).
KEYS = {OutboxChannel.line: ("text", "title"), OutboxChannel.email: ("text", "subject", "html"),
        OutboxChannel.sms: ("text",)}


def _invalid(field: str, problem: str) -> MessageTemplateInvalid:
    return MessageTemplateInvalid(field=field, problem=problem)


def _checked(session: Session, actor: Actor, *, name: str, channel: str | OutboxChannel,
             text: str, subject: str | None, html: str | None, title: str | None,
             template_id: str | None = None) -> tuple[str, OutboxChannel, dict[str, str]]:
    """The name, channel and content to store, or the first field at fault."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise _invalid("name", N_("name the template (at most 120 characters)."))
    if channel not in {c.value for c in CHANNELS}:
        raise _invalid("channel", N_("a template is for LINE, e-mail or SMS."))
    out = OutboxChannel(channel)
    given = {"text": text, "subject": subject, "html": html, "title": title}
    content = {k: str(given[k] or "").strip() for k in KEYS[out]}
    content = {k: v for k, v in content.items() if v}
    if not content.get("text"):
        raise _invalid("text", N_("write the message."))
    if out is OutboxChannel.email and not content.get("subject"):
        raise _invalid("subject", N_("an e-mail needs a subject."))
    clean = check_content(out, content)
    taken = session.scalar(select(MessageTemplate.id).where(
        MessageTemplate.tenant_id == actor.tenant_id, MessageTemplate.name == name))
    if taken is not None and taken != template_id:
        raise _invalid("name", N_("another template has this name."))
    return name, out, clean


def _apply(template: MessageTemplate, name: str, channel: OutboxChannel,
           content: dict[str, str]) -> None:
    template.name = name
    template.channel = channel
    template.text = content["text"]
    template.subject = content.get("subject")
    template.html = content.get("html")
    template.title = content.get("title")


def create_template(session: Session, actor: Actor, *, name: str, channel: str | OutboxChannel,
                    text: str, subject: str | None = None, html: str | None = None,
                    title: str | None = None, now: datetime | None = None) -> MessageTemplate:
    actor.require(Permission.campaigns_manage)
    name, out, content = _checked(session, actor, name=name, channel=channel, text=text,
                                  subject=subject, html=html, title=title)
    now = now or utcnow()
    template = MessageTemplate(tenant_id=actor.tenant_id, created_at=now, updated_at=now,
                               created_by=actor.label, updated_by=actor.label)
    _apply(template, name, out, content)
    session.add(template)
    session.flush()
    audit.record(session, actor, "message_template.create", "message_template", template.id,
                 {"name": name, "channel": out.value})
    return template


def update_template(session: Session, actor: Actor, template_id: str, *, name: str,
                    channel: str | OutboxChannel, text: str, subject: str | None = None,
                    html: str | None = None, title: str | None = None,
                    now: datetime | None = None) -> MessageTemplate:
    """New content for a template; sends and journeys made from it keep their copy."""
    actor.require(Permission.campaigns_manage)
    template = get_template(session, actor, template_id)
    name, out, content = _checked(session, actor, name=name, channel=channel, text=text,
                                  subject=subject, html=html, title=title,
                                  template_id=template.id)
    _apply(template, name, out, content)
    template.updated_at = now or utcnow()
    template.updated_by = actor.label
    session.flush()
    audit.record(session, actor, "message_template.update", "message_template", template.id,
                 {"name": name, "channel": out.value})
    return template


def delete_template(session: Session, actor: Actor, template_id: str) -> None:
    """Delete for good: nothing points at a template (sends and journeys hold copies)."""
    actor.require(Permission.campaigns_manage)
    template = get_template(session, actor, template_id)
    audit.record(session, actor, "message_template.delete", "message_template", template.id,
                 {"name": template.name, "channel": template.channel.value})
    session.delete(template)
    session.flush()


def get_template(session: Session, actor: Actor, template_id: str) -> MessageTemplate:
    actor.require(Permission.campaigns_read)
    template = session.get(MessageTemplate, (actor.tenant_id, template_id))
    if template is None:
        raise MessageTemplateNotFound()
    return template


def list_templates(session: Session, actor: Actor,
                   channel: OutboxChannel | None = None) -> list[MessageTemplate]:
    """The brand's templates by name."""
    actor.require(Permission.campaigns_read)
    query = select(MessageTemplate).where(MessageTemplate.tenant_id == actor.tenant_id)
    if channel is not None:
        query = query.where(MessageTemplate.channel == channel)
    return list(session.scalars(query.order_by(MessageTemplate.name, MessageTemplate.id)))


def content_of(template: MessageTemplate) -> dict[str, Any]:
    """The template's content as a send or a journey action stores it (a copy)."""
    values = {"text": template.text, "subject": template.subject, "html": template.html,
              "title": template.title}
    return {k: v for k, v in values.items() if k in KEYS[template.channel] and v}
