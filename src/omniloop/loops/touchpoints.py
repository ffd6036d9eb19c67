"""Touchpoints: placed QR codes per store, each with a purpose, reached at `/t/<code>`.

Codes are 8 characters from the campaigns' code alphabet (no 0/O, 1/I/L, U), so a code
printed on a table tent and typed by hand still comes out right; 30^8 ≈ 6.6 × 10^11 codes
make guessing one pointless. They are unique across brands because the URL names no brand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns.codes import make_code
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, Conflict
from omniloop.core.i18n import gettext
from omniloop.loops import lookup
from omniloop.loops.errors import (
    TouchpointInvalid,
    TouchpointNotFound,
    TouchpointRetired,
    TouchpointScanned,
)
from omniloop.loops.models import Feedback, Placement, Purpose, Touchpoint
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import get_store

audit.register_action("touchpoint.create", N_("Touchpoint created"))
audit.register_action("touchpoint.update", N_("Touchpoint changed"))
audit.register_action("touchpoint.retire", N_("Touchpoint retired"))
audit.register_action("touchpoint.delete", N_("Touchpoint deleted"))

CODE_PATTERN = "########"
_CODE_RETRIES = 8
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
MAX_TABLES = 200
# Purposes that send the person on to a URL the brand gives.
URL_PURPOSES = frozenset({Purpose.line_follow, Purpose.review, Purpose.url})

PLACEMENT_LABELS: dict[Placement, str] = {
    Placement.table: N_("Table"),
    Placement.counter: N_("Counter"),
    Placement.receipt: N_("Receipt"),
    Placement.poster: N_("Poster"),
    Placement.packaging: N_("Packaging"),
    Placement.staff_badge: N_("Staff badge"),
}
PURPOSE_LABELS: dict[Purpose, str] = {
    Purpose.membership: N_("Join membership"),
    Purpose.line_follow: N_("Add our LINE account"),
    Purpose.feedback: N_("Feedback"),
    Purpose.review: N_("Public review"),
    Purpose.referral: N_("Refer a friend"),
    Purpose.claim: N_("Claim a coupon"),
    Purpose.url: N_("Any web address"),
}


def is_url(text: str) -> bool:
    return bool(_URL.match(text)) and len(text) <= 500


@dataclass
class TouchpointData:
    """What the admin form or the API sends; checked by `_check`."""

    store_id: str
    placement: Placement
    purpose: Purpose
    name: str = ""
    number: int | None = None
    target_url: str = ""
    campaign_id: str | None = None
    reward_campaign_id: str | None = None
    reward_points: int = 0
    enabled: bool = True


def _invalid(reason: str) -> TouchpointInvalid:
    return TouchpointInvalid(reason=gettext(reason))


def _check(session: Session, actor: Actor, data: TouchpointData) -> None:
    get_store(session, actor, data.store_id)
    if data.purpose in URL_PURPOSES and not is_url(data.target_url):
        raise _invalid(N_("this purpose needs a web address starting with https://."))
    if data.target_url and not is_url(data.target_url):
        raise _invalid(N_("the web address must start with https:// or http://."))
    if data.purpose == Purpose.claim:
        if not data.campaign_id:
            raise _invalid(N_("choose the campaign whose coupon people claim."))
        get_campaign(session, actor, data.campaign_id)
    if data.reward_campaign_id:
        get_campaign(session, actor, data.reward_campaign_id)
    if not 0 <= data.reward_points <= 100_000:
        raise _invalid(N_("reward points must be between 0 and 100,000."))
    if data.number is not None and not 1 <= data.number <= 9999:
        raise _invalid(N_("a table number is between 1 and 9999."))
    if len(data.name) > 120:
        raise _invalid(N_("a name has at most 120 characters."))


def create_touchpoint(session: Session, actor: Actor, data: TouchpointData) -> Touchpoint:
    actor.require(Permission.campaigns_manage)
    _check(session, actor, data)
    for _ in range(_CODE_RETRIES):
        try:
            with session.begin_nested():
                touchpoint = Touchpoint(
                    tenant_id=actor.tenant_id, code=make_code(CODE_PATTERN),
                    store_id=data.store_id, placement=data.placement, number=data.number,
                    name=data.name, purpose=data.purpose, target_url=data.target_url,
                    campaign_id=data.campaign_id if data.purpose == Purpose.claim else None,
                    reward_campaign_id=data.reward_campaign_id or None,
                    reward_points=data.reward_points, enabled=data.enabled)
                session.add(touchpoint)
                session.flush()
        except IntegrityError:
            continue  # the random code exists already (any brand): draw again
        audit.record(session, actor, "touchpoint.create", "touchpoint", touchpoint.id,
                     {"code": touchpoint.code, "purpose": touchpoint.purpose.value})
        return touchpoint
    raise Conflict()


def create_tables(session: Session, actor: Actor, store_id: str, first: int, last: int,
                  data: TouchpointData) -> list[Touchpoint]:
    """Table touchpoints numbered first..last, skipping numbers the store already has."""
    if not 1 <= first <= last or last - first + 1 > MAX_TABLES:
        raise _invalid(N_("give table numbers from 1, at most 200 at a time."))
    existing = set(session.scalars(select(Touchpoint.number).where(
        Touchpoint.tenant_id == actor.tenant_id, Touchpoint.store_id == store_id,
        Touchpoint.placement == Placement.table, Touchpoint.retired_at.is_(None))))
    made = []
    for number in range(first, last + 1):
        if number in existing:
            continue
        data.number = number
        data.placement = Placement.table
        made.append(create_touchpoint(session, actor, data))
    return made


def get_touchpoint(session: Session, actor: Actor, touchpoint_id: str) -> Touchpoint:
    actor.require(Permission.campaigns_read)
    touchpoint = session.get(Touchpoint, (actor.tenant_id, touchpoint_id))
    if touchpoint is None or not actor.sees_store(touchpoint.store_id):
        raise TouchpointNotFound()
    return touchpoint


def _live(session: Session, actor: Actor, touchpoint_id: str) -> Touchpoint:
    """A touchpoint that may still change (retired ones stay as they were)."""
    touchpoint = get_touchpoint(session, actor, touchpoint_id)
    if touchpoint.retired_at is not None:
        raise TouchpointRetired()
    return touchpoint


def update_touchpoint(session: Session, actor: Actor, touchpoint_id: str,
                      data: TouchpointData) -> Touchpoint:
    actor.require(Permission.campaigns_manage)
    touchpoint = _live(session, actor, touchpoint_id)
    _check(session, actor, data)
    touchpoint.store_id = data.store_id
    touchpoint.placement = data.placement
    touchpoint.number = data.number
    touchpoint.name = data.name
    touchpoint.purpose = data.purpose
    touchpoint.target_url = data.target_url
    touchpoint.campaign_id = data.campaign_id if data.purpose == Purpose.claim else None
    touchpoint.reward_campaign_id = data.reward_campaign_id or None
    touchpoint.reward_points = data.reward_points
    touchpoint.enabled = data.enabled
    session.flush()
    audit.record(session, actor, "touchpoint.update", "touchpoint", touchpoint.id,
                 {"enabled": touchpoint.enabled, "purpose": touchpoint.purpose.value})
    lookup.forget(touchpoint.code)
    return touchpoint


def set_enabled(session: Session, actor: Actor, touchpoint_id: str,
                enabled: bool) -> Touchpoint:
    actor.require(Permission.campaigns_manage)
    touchpoint = _live(session, actor, touchpoint_id)
    touchpoint.enabled = enabled
    session.flush()
    audit.record(session, actor, "touchpoint.update", "touchpoint", touchpoint.id,
                 {"enabled": enabled})
    lookup.forget(touchpoint.code)
    return touchpoint


def was_used(session: Session, touchpoint: Touchpoint) -> bool:
    """Scanned (the recorder's count), or feedback arrived through it."""
    if touchpoint.scans > 0:
        return True
    return bool(session.scalar(select(exists().where(
        Feedback.tenant_id == touchpoint.tenant_id, Feedback.touchpoint_id == touchpoint.id))))


def retire_touchpoint(session: Session, actor: Actor, touchpoint_id: str, *,
                      now: datetime | None = None) -> Touchpoint:
    """Take a printed code out of use for good: `/t/<code>` answers "not in use", the admin
    list hides it (under a filter), and its scans stay in the report. Retiring twice is
    a no-op."""
    actor.require(Permission.campaigns_manage)
    touchpoint = get_touchpoint(session, actor, touchpoint_id)
    if touchpoint.retired_at is not None:
        return touchpoint
    touchpoint.retired_at = now or utcnow()
    touchpoint.enabled = False
    session.flush()
    audit.record(session, actor, "touchpoint.retire", "touchpoint", touchpoint.id,
                 {"code": touchpoint.code, "scans": touchpoint.scans})
    lookup.forget(touchpoint.code)
    return touchpoint


def delete_touchpoint(session: Session, actor: Actor, touchpoint_id: str) -> None:
    """Delete a touchpoint that was never used (a typo, a test); one that was scanned is
    refused (`touchpoint_scanned`): retire it instead."""
    actor.require(Permission.campaigns_manage)
    touchpoint = get_touchpoint(session, actor, touchpoint_id)
    if was_used(session, touchpoint):
        raise TouchpointScanned()
    code = touchpoint.code
    audit.record(session, actor, "touchpoint.delete", "touchpoint", touchpoint.id,
                 {"code": code, "purpose": touchpoint.purpose.value,
                  "store_id": touchpoint.store_id})
    # Conditional on the count: a scan the recorder wrote meanwhile keeps the row.
    deleted = session.execute(delete(Touchpoint).where(
        Touchpoint.tenant_id == actor.tenant_id, Touchpoint.id == touchpoint.id,
        Touchpoint.scans == 0).execution_options(synchronize_session=False))
    if deleted.rowcount != 1:  # type: ignore[attr-defined]
        raise TouchpointScanned()
    session.expunge(touchpoint)
    lookup.forget(code)


def list_touchpoints(session: Session, actor: Actor, store_id: str | None = None, *,
                     retired: bool = False) -> list[Touchpoint]:
    """The brand's touchpoints in use (enabled or disabled), or, with `retired`, the
    retired ones."""
    actor.require(Permission.campaigns_read)
    query = select(Touchpoint).where(
        Touchpoint.tenant_id == actor.tenant_id,
        Touchpoint.retired_at.is_not(None) if retired else Touchpoint.retired_at.is_(None))
    if store_id is not None:
        query = query.where(Touchpoint.store_id == store_id)
    if actor.store_ids is not None:
        query = query.where(Touchpoint.store_id.in_(actor.store_ids))
    return list(session.scalars(query.order_by(Touchpoint.store_id, Touchpoint.placement,
                                               Touchpoint.number, Touchpoint.created_at)))


def touchpoint_label(touchpoint: Touchpoint) -> str:
    """"Table 12", "Counter", or the name the brand gave it."""
    if touchpoint.name:
        return touchpoint.name
    label = gettext(PLACEMENT_LABELS[touchpoint.placement])
    if touchpoint.number is not None:
        return gettext("{placement} {number}").format(placement=label, number=touchpoint.number)
    return label
