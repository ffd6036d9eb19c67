"""Journeys: a trigger → an optional wait → an optional condition → actions.

Triggers come from two places. Changes that happen one at a time call `enter` in their own
transaction: `line_follow` (the LINE webhook), `first_purchase` and `purchase` (orders),
`low_feedback` (the loops module's feedback form), all through omniloop.wiring. The ones
that happen by the passing of time — `birthday`, `coupon_expiring`, `points_expiring`,
`no_visit` — are found by a periodic scan (`messaging/journey_scan.py`). Each customer
enters a journey **at most once per trigger occurrence** (a unique `(journey, occurrence)`:
the order id, the webhook event id, the feedback, the birthday's year, the coupon, the
expiry date, the last order before a lapse), so a retried order, a redelivered follow or a
scan run twice enters nothing twice. Runs wait until `due_at`; the worker runs due ones
(`run_due`), each action in its own savepoint: the condition is checked then, and each action
(a message through the outbox, a coupon into the wallet, points, a staff task) is done and
logged on the run, so every step can be read back on the journey's page.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, NotFound, OmniloopError
from omniloop.customers.consent import may_message
from omniloop.customers.models import Channel, Customer
from omniloop.messaging import line_messages
from omniloop.messaging.errors import MessageContentInvalid
from omniloop.messaging.models import (
    Journey,
    JourneyRun,
    JourneyRunStatus,
    OutboxChannel,
    Purpose,
    StaffTask,
)
from omniloop.messaging.sends import check_content, personal_values, render, variables_in
from omniloop.messaging.service import message_customer
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission, system_actor

TRIGGERS: dict[str, str] = {
    "line_follow": N_("Follows the LINE account"),
    "first_purchase": N_("Makes a first purchase"),
    "purchase": N_("Makes a purchase"),
    "low_feedback": N_("Gives low feedback"),
    "birthday": N_("Has a birthday (that day)"),
    "coupon_expiring": N_("Has a coupon that expires within 3 days"),
    "points_expiring": N_("Has points that expire within 30 days"),
    "no_visit": N_("Has not bought anything for 60 days"),
}
# Triggers the periodic scan finds (journey_scan.py); the others are entered as they happen.
SCANNED_TRIGGERS = ("birthday", "coupon_expiring", "points_expiring", "no_visit")
ACTION_KINDS: dict[str, str] = {
    "message": N_("Send a message"),
    "coupon": N_("Give a coupon"),
    "points": N_("Add points"),
    "task": N_("Create a staff task"),
}
CONSENT_CHANNELS = ("line", "email", "sms")
MAX_ACTIONS = 5
MAX_TASK_TITLE = 200
# Ready-made journeys the admin offers (name, trigger, wait, condition, actions). A coupon
# action names no campaign here: a template with one opens in the editor to pick it.
TEMPLATES: dict[str, dict[str, Any]] = {
    "thank_first_purchase": {
        "name": N_("Thank you after the first purchase"), "trigger": "first_purchase",
        "wait_minutes": 60, "condition": {"consent": "line"},
        "actions": [{"kind": "message", "channel": "line",
                     "text": "{name} 您好，謝謝您的第一次光臨！期待再見到您。"}]},
    "welcome_points": {
        "name": N_("Welcome points for new LINE friends"), "trigger": "line_follow",
        "wait_minutes": 0, "condition": {},
        "actions": [{"kind": "points", "points": 50}]},
    "low_feedback_make_good": {
        "name": N_("Sorry for the experience: a make-good coupon after low feedback"),
        "trigger": "low_feedback", "wait_minutes": 0, "condition": {},
        "actions": [{"kind": "task", "title": "致電 {name}，了解這次不愉快的經驗"},
                    {"kind": "coupon", "campaign_id": ""},
                    {"kind": "message", "channel": "line",
                     "text": "{name} 您好，很抱歉這次沒讓您滿意。我們已將一張補償優惠券放進您的"
                             "票夾，希望能再為您服務。"}]},
    "birthday_greeting": {
        "name": N_("Birthday greeting"), "trigger": "birthday",
        "wait_minutes": 0, "condition": {"consent": "line"},
        "actions": [{"kind": "message", "channel": "line",
                     "text": "{name} 生日快樂！🎂 祝您有美好的一天，這個月歡迎來店慶祝。"}]},
    "coupon_expiring_reminder": {
        "name": N_("Your coupon expires in 3 days"), "trigger": "coupon_expiring",
        "wait_minutes": 0, "condition": {"consent": "line"},
        "actions": [{"kind": "message", "channel": "line",
                     "text": "{name} 您好，您票夾裡的優惠券再 3 天就到期了，別忘了來店使用！"}]},
    "points_expiring_reminder": {
        "name": N_("Your points expire soon"), "trigger": "points_expiring",
        "wait_minutes": 0, "condition": {"consent": "line"},
        "actions": [{"kind": "message", "channel": "line",
                     "text": "{name} 您好，您有點數將在 30 天內到期，下次消費時記得折抵使用。"}]},
    "no_visit_miss_you": {
        "name": N_("We miss you after 60 days"), "trigger": "no_visit",
        "wait_minutes": 0, "condition": {"consent": "line"},
        "actions": [{"kind": "message", "channel": "line",
                     "text": "{name} 您好，好久不見！我們很想念您，期待您再次光臨。"},
                    {"kind": "points", "points": 20}]},
}
MAX_WAIT_MINUTES = 60 * 24 * 90


class JourneyInvalid(MessageContentInvalid):
    """A definition that cannot run. `problem` is an English msgid (translated when shown);
    `field` names the part at fault: "trigger", "wait_minutes", "condition.tag",
    "actions.1.text"…"""

    code = "journey_invalid"
    message = N_("The journey is invalid: {problem}")

    def localized(self) -> str:
        from omniloop.core.i18n import gettext

        return gettext(self.msgid).format(problem=self.problem())

    def problem(self) -> str:
        """The problem alone, in the request's language (shown beside the field)."""
        from omniloop.core.i18n import gettext

        return gettext(str(self.params.get("problem", "")))


class JourneyNotFound(NotFound):
    code = "journey_not_found"
    message = N_("Journey not found.")


def _invalid(field: str, problem: str) -> JourneyInvalid:
    return JourneyInvalid(field=field, problem=problem)


def _check_message(field: str, action: dict[str, Any]) -> None:
    channel = action.get("channel", "line")
    if channel not in CONSENT_CHANNELS:
        raise _invalid(f"{field}.channel", N_("a message goes out on LINE, e-mail or SMS."))
    text = str(action.get("text", "")).strip()
    if not text:
        raise _invalid(f"{field}.text", N_("write the message."))
    if channel == "email" and not str(action.get("subject", "")).strip():
        raise _invalid(f"{field}.subject", N_("an e-mail needs a subject."))
    limit = {"line": line_messages.MAX_TEXT, "email": 20_000, "sms": 1000}[str(channel)]
    if len(text) > limit:
        raise _invalid(f"{field}.text", N_("the message is too long."))
    try:  # the variables and the channel's limits, as a send's content
        check_content(OutboxChannel(channel),
                      {k: v for k, v in action.items() if k in ("text", "subject")},
                      field_prefix=f"{field}.")
    except MessageContentInvalid as exc:
        raise _invalid(exc.field or f"{field}.text", exc.localized()) from None


def _from_templates(session: Session, actor: Actor,
                    actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Message actions naming a saved template (`template_id`) get a copy of its channel,
    subject and text: the journey sends what it stores, and a later change to the template
    changes nothing here."""
    from omniloop.messaging.templates import content_of, get_template

    copied = []
    for index, action in enumerate(actions):
        if isinstance(action, dict) and action.get("kind") == "message" \
                and action.get("template_id"):
            if str(action.get("text") or "").strip():
                raise _invalid(f"actions.{index}.template_id",
                               N_("give either a text or a template, not both."))
            try:
                template = get_template(session, actor, str(action["template_id"]))
            except OmniloopError:
                raise _invalid(f"actions.{index}.template_id",
                               N_("choose a template from the list.")) from None
            content = content_of(template)
            action = {"kind": "message", "channel": template.channel.value,
                      "text": content["text"]} | (
                {"subject": content["subject"]} if "subject" in content else {})
        copied.append(action)
    return copied


def _check(trigger: str, wait_minutes: int, condition: dict[str, Any],
           actions: list[dict[str, Any]]) -> None:
    if trigger not in TRIGGERS:
        raise _invalid("trigger", N_("choose a trigger from the list."))
    if isinstance(wait_minutes, bool) or not isinstance(wait_minutes, int) \
            or not 0 <= wait_minutes <= MAX_WAIT_MINUTES:
        raise _invalid("wait_minutes", N_("the wait is 0 to 90 days."))
    if set(condition) - {"consent", "tag"}:
        raise _invalid("condition", N_("a condition is on consent or a tag."))
    if "consent" in condition and condition["consent"] not in CONSENT_CHANNELS:
        raise _invalid("condition.consent", N_("consent is for LINE, e-mail or SMS."))
    if "tag" in condition and not (isinstance(condition["tag"], str)
                                   and 1 <= len(condition["tag"].strip()) <= 40):
        raise _invalid("condition.tag", N_("a tag is 1 to 40 characters."))
    if not 1 <= len(actions) <= MAX_ACTIONS:
        raise _invalid("actions", N_("a journey has 1 to 5 actions."))
    for index, action in enumerate(actions):
        field = f"actions.{index}"
        if not isinstance(action, dict):
            raise _invalid(field, N_("actions are message, coupon, points or task."))
        kind = action.get("kind")
        if kind == "message":
            _check_message(field, action)
        elif kind == "coupon":
            if not isinstance(action.get("campaign_id"), str) or not action["campaign_id"]:
                raise _invalid(f"{field}.campaign_id", N_("choose the coupon's campaign."))
        elif kind == "points":
            points = action.get("points")
            if isinstance(points, bool) or not isinstance(points, int) \
                    or not 0 < points <= 100_000:
                raise _invalid(f"{field}.points",
                               N_("points are a whole number from 1 to 100,000."))
        elif kind == "task":
            title = action.get("title")
            if not isinstance(title, str) or not 1 <= len(title.strip()) <= MAX_TASK_TITLE:
                raise _invalid(f"{field}.title", N_("a task has a title of 1 to 200 characters."))
        else:
            raise _invalid(f"{field}.kind", N_("actions are message, coupon, points or task."))


def _clean(condition: dict[str, Any], actions: list[dict[str, Any]]
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Only the keys each part uses, trimmed: what is stored and shown."""
    kept = {"message": ("kind", "channel", "subject", "text"), "coupon": ("kind", "campaign_id"),
            "points": ("kind", "points"), "task": ("kind", "title")}
    clean_actions = []
    for action in actions:
        clean = {k: action[k] for k in kept[action["kind"]] if k in action}
        if action["kind"] == "message":
            clean["channel"] = action.get("channel", "line")
            if clean["channel"] != "email":
                clean.pop("subject", None)
        for key in ("text", "subject", "title"):
            if key in clean:
                clean[key] = str(clean[key]).strip()
        clean_actions.append(clean)
    clean_condition = {k: str(v).strip() for k, v in condition.items() if str(v).strip()}
    return clean_condition, clean_actions


def _check_campaigns(session: Session, tenant_id: str, actions: list[dict[str, Any]]) -> None:
    """A coupon action names a campaign of this brand."""
    from omniloop.campaigns.models import Campaign

    for index, action in enumerate(actions):
        if action["kind"] == "coupon" and session.get(
                Campaign, (tenant_id, action["campaign_id"])) is None:
            raise _invalid(f"actions.{index}.campaign_id", N_("choose the coupon's campaign."))


def _define(session: Session, actor: Actor, journey: Journey, *, name: str, trigger: str,
            wait_minutes: int, condition: dict[str, Any] | None,
            actions: list[dict[str, Any]]) -> None:
    condition = condition or {}
    if not isinstance(condition, dict) or not isinstance(actions, list):
        raise _invalid("actions", N_("a journey has 1 to 5 actions."))
    actions = _from_templates(session, actor, actions)
    _check(trigger, wait_minutes, condition, actions)
    condition, actions = _clean(condition, actions)
    _check_campaigns(session, actor.tenant_id, actions)
    journey.name = name.strip()[:120] or trigger
    journey.trigger = trigger
    journey.wait_minutes = wait_minutes
    journey.condition = condition
    journey.actions = actions


def create_journey(session: Session, actor: Actor, *, name: str, trigger: str,
                   wait_minutes: int = 0, condition: dict[str, Any] | None = None,
                   actions: list[dict[str, Any]]) -> Journey:
    actor.require(Permission.campaigns_manage)
    journey = Journey(tenant_id=actor.tenant_id, active=True)
    _define(session, actor, journey, name=name, trigger=trigger, wait_minutes=wait_minutes,
            condition=condition, actions=actions)
    session.add(journey)
    session.flush()
    audit.record(session, actor, "journey.create", "journey", journey.id,
                 {"name": journey.name, "trigger": trigger})
    return journey


def update_journey(session: Session, actor: Actor, journey_id: str, *, name: str,
                   trigger: str, wait_minutes: int = 0,
                   condition: dict[str, Any] | None = None,
                   actions: list[dict[str, Any]]) -> Journey:
    """A new definition for an existing journey. Runs already waiting take the new one when
    they are due (the condition and actions are read then); who entered stays entered."""
    actor.require(Permission.campaigns_manage)
    journey = get_journey(session, actor, journey_id)
    _define(session, actor, journey, name=name, trigger=trigger, wait_minutes=wait_minutes,
            condition=condition, actions=actions)
    session.flush()
    audit.record(session, actor, "journey.edit", "journey", journey.id,
                 {"name": journey.name, "trigger": trigger})
    return journey


def get_journey(session: Session, actor: Actor, journey_id: str) -> Journey:
    actor.require(Permission.campaigns_read)
    journey = session.get(Journey, (actor.tenant_id, journey_id))
    if journey is None:
        raise JourneyNotFound()
    return journey


def template_spec(template: str) -> dict[str, Any]:
    """A template's definition, its name in the request's language (the editor starts
    from it)."""
    from omniloop.core.i18n import gettext as translated  # the msgid is in TEMPLATES

    spec = TEMPLATES.get(template)
    if spec is None:
        raise _invalid("template", N_("unknown template."))
    return {"name": translated(str(spec["name"])), "trigger": spec["trigger"],
            "wait_minutes": spec["wait_minutes"], "condition": dict(spec["condition"]),
            "actions": [dict(a) for a in spec["actions"]]}


def needs_choices(template: str) -> bool:
    """A template with a coupon action: the campaign is picked in the editor first."""
    spec = TEMPLATES.get(template)
    return spec is not None and any(a["kind"] == "coupon" and not a.get("campaign_id")
                                    for a in spec["actions"])


def from_template(session: Session, actor: Actor, template: str) -> Journey:
    return create_journey(session, actor, **template_spec(template))


def list_journeys(session: Session, actor: Actor) -> list[tuple[Journey, dict[str, int]]]:
    """Every journey with how many runs are in each state."""
    actor.require(Permission.campaigns_read)
    journeys = list(session.scalars(select(Journey).where(
        Journey.tenant_id == actor.tenant_id).order_by(Journey.created_at)))
    counts: dict[str, dict[str, int]] = {j.id: {s.value: 0 for s in JourneyRunStatus}
                                         for j in journeys}
    for journey_id, state, count in session.execute(
            select(JourneyRun.journey_id, JourneyRun.status, func.count())
            .where(JourneyRun.tenant_id == actor.tenant_id)
            .group_by(JourneyRun.journey_id, JourneyRun.status)):
        counts[journey_id][JourneyRunStatus(state).value] = int(count)
    return [(j, counts[j.id]) for j in journeys]


def set_active(session: Session, actor: Actor, journey_id: str, active: bool) -> Journey:
    actor.require(Permission.campaigns_manage)
    journey = get_journey(session, actor, journey_id)
    journey.active = active
    audit.record(session, actor, "journey.update", "journey", journey.id, {"active": active})
    return journey


def recent_runs(session: Session, actor: Actor, journey_id: str,
                limit: int = 50) -> list[JourneyRun]:
    actor.require(Permission.campaigns_read)
    return list(session.scalars(select(JourneyRun).where(
        JourneyRun.tenant_id == actor.tenant_id, JourneyRun.journey_id == journey_id)
        .order_by(JourneyRun.created_at.desc()).limit(limit)))


# --- entering and running -----------------------------------------------------------------


def _step(run: JourneyRun, step: str, outcome: str, now: datetime) -> None:
    run.log = [*run.log, {"step": step, "outcome": outcome, "at": now.isoformat()}]


def enter(session: Session, tenant_id: str, trigger: str, customer_id: str, occurrence: str,
          *, now: datetime | None = None) -> int:
    """Put the customer into every active journey of the trigger, once per occurrence, in
    the caller's transaction. Answers how many journeys were entered."""
    now = now or utcnow()
    entered = 0
    for journey in session.scalars(select(Journey).where(
            Journey.tenant_id == tenant_id, Journey.trigger == trigger,
            Journey.active.is_(True))):
        exists = session.scalar(select(JourneyRun.id).where(
            JourneyRun.tenant_id == tenant_id, JourneyRun.journey_id == journey.id,
            JourneyRun.occurrence == occurrence))
        if exists is not None:
            continue
        run = JourneyRun(tenant_id=tenant_id, journey_id=journey.id, customer_id=customer_id,
                         occurrence=occurrence[:100], status=JourneyRunStatus.waiting,
                         due_at=now + timedelta(minutes=journey.wait_minutes), log=[],
                         created_at=now)
        _step(run, "enter", trigger, now)
        try:
            with session.begin_nested():
                session.add(run)
                session.flush()
        except IntegrityError:
            continue  # entered by a concurrent delivery of the same occurrence
        entered += 1
    return entered


def _condition_holds(session: Session, run: JourneyRun, condition: dict[str, Any]) -> bool:
    if "consent" in condition and not may_message(session, run.tenant_id, run.customer_id,
                                                  Channel(condition["consent"])):
        return False
    if "tag" in condition:
        customer = session.get(Customer, (run.tenant_id, run.customer_id))
        if customer is None or condition["tag"] not in (customer.tags or []):
            return False
    return True


def _act(session: Session, actor: Actor, run: JourneyRun, index: int,
         action: dict[str, Any], now: datetime) -> str:
    kind = action["kind"]
    if kind == "message":
        channel = OutboxChannel(action.get("channel", "line"))
        customer = session.get(Customer, (run.tenant_id, run.customer_id))
        name = (customer.name if customer is not None else None) or ""
        # The send variables, rendered as a send renders them ({claim_url} is empty: a
        # journey message names no campaign).
        content = check_content(channel, {k: v for k, v in action.items()
                                          if k in ("text", "subject", "html")})
        values = personal_values(session, run.tenant_id, run.customer_id, channel,
                                 variables_in(content), name=name)
        payload = render(channel, content, values, has_campaign=False)
        queued = message_customer(session, actor, run.customer_id, channel,
                                  Purpose.marketing, f"journey:{run.id}:{index}", payload)
        return "queued" if queued else "no address"
    if kind == "coupon":
        from omniloop.campaigns.claims import issue_coupon

        # A known customer: the coupon goes straight into their wallet, under the rules of a
        # claim. Erased or merged-away profiles hold no identities any more: nothing to give.
        customer = session.get(Customer, (run.tenant_id, run.customer_id))
        if customer is None or customer.erased_at is not None or customer.merged_into_id:
            return "no identity"
        result = issue_coupon(session, actor, str(action["campaign_id"]), customer,
                              channel="journey")
        return f"coupon {result.coupon.code}"
    if kind == "points":
        from omniloop.loyalty.ledger import adjust_points

        entry = adjust_points(session, actor, run.customer_id, int(action["points"]),
                              f"journey {run.journey_id}", key=f"journey:{run.id}:{index}")
        return f"+{entry.points} points"
    if kind == "task":
        customer = session.get(Customer, (run.tenant_id, run.customer_id))
        name = (customer.name if customer is not None else None) or ""
        task = StaffTask(tenant_id=run.tenant_id, run_id=run.id, action_index=index,
                         journey_id=run.journey_id, customer_id=run.customer_id,
                         store_id=customer.home_store_id if customer is not None else None,
                         title=str(action["title"]).replace("{name}", name)[:MAX_TASK_TITLE],
                         created_at=now)
        session.add(task)
        session.flush()
        return f"task {task.id}"
    return "unknown action"


def run_due(session: Session, *, now: datetime | None = None, limit: int = 500) -> int:
    """Run every waiting run whose time has come (the worker calls this)."""
    now = now or utcnow()
    done = 0
    for run in list(session.scalars(select(JourneyRun).where(
            JourneyRun.status == JourneyRunStatus.waiting, JourneyRun.due_at <= now)
            .order_by(JourneyRun.due_at).limit(limit))):
        journey = session.get_one(Journey, (run.tenant_id, run.journey_id))
        actor = system_actor(run.tenant_id, f"journey {journey.name}"[:160])
        if not journey.active:
            run.status = JourneyRunStatus.skipped
            _step(run, "condition", "journey switched off", now)
        elif not _condition_holds(session, run, journey.condition):
            run.status = JourneyRunStatus.skipped
            _step(run, "condition", "not met", now)
        else:
            _step(run, "condition", "met", now)
            failed = False
            for index, action in enumerate(journey.actions):
                try:
                    with session.begin_nested():
                        outcome = _act(session, actor, run, index, action, now)
                except OmniloopError as exc:
                    failed = True
                    outcome = f"refused: {exc.code}"
                _step(run, f"action:{action['kind']}", outcome, now)
            run.status = JourneyRunStatus.failed if failed else JourneyRunStatus.done
        run.finished_at = now
        done += 1
    session.flush()
    return done
