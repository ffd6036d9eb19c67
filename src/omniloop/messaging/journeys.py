"""Journeys: a trigger → an optional wait → an optional condition → actions.

Triggers wired so far: `line_follow` (the LINE webhook), `first_purchase` and `purchase`
(orders, through omniloop.wiring). `enter` is called in the transaction of the change that
triggers it; each customer enters a journey **at most once per trigger occurrence** (a unique
`(journey, occurrence)`: the order id, the webhook event id), so a retried order or a
redelivered follow enters nothing twice. Runs wait until `due_at`; the worker runs due ones
(`run_due`), each in its own savepoint: the condition is checked then, and each action
(a message through the outbox, a coupon into the wallet, points) is done and logged on the
run, so every step can be read back on the journey's page.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.customers.consent import may_message
from omniloop.customers.models import Channel, Customer
from omniloop.messaging.errors import MessageContentInvalid
from omniloop.messaging.models import (
    Journey,
    JourneyRun,
    JourneyRunStatus,
    OutboxChannel,
    Purpose,
)
from omniloop.messaging.service import message_customer, payload_for
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission, system_actor

TRIGGERS: dict[str, str] = {
    "line_follow": N_("Follows the LINE account"),
    "first_purchase": N_("Makes a first purchase"),
    "purchase": N_("Makes a purchase"),
}
# Ready-made journeys the admin offers (name, trigger, wait, condition, actions).
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
}
MAX_WAIT_MINUTES = 60 * 24 * 90


class JourneyInvalid(MessageContentInvalid):
    code = "journey_invalid"
    message = N_("The journey is invalid: {problem}")


def _check(trigger: str, wait_minutes: int, condition: dict[str, Any],
           actions: list[dict[str, Any]]) -> None:
    if trigger not in TRIGGERS:
        raise JourneyInvalid(problem="the trigger is one of " + ", ".join(TRIGGERS) + ".")
    if not 0 <= wait_minutes <= MAX_WAIT_MINUTES:
        raise JourneyInvalid(problem="the wait is 0 to 90 days.")
    if set(condition) - {"consent", "tag"}:
        raise JourneyInvalid(problem="a condition is on consent or a tag.")
    if "consent" in condition and condition["consent"] not in {c.value for c in Channel}:
        raise JourneyInvalid(problem="consent is for line, email or sms.")
    if not 1 <= len(actions) <= 5:
        raise JourneyInvalid(problem="a journey has 1 to 5 actions.")
    for action in actions:
        kind = action.get("kind")
        if kind == "message":
            if action.get("channel", "line") not in ("line", "email", "sms"):
                raise JourneyInvalid(problem="a message goes out on line, email or sms.")
            try:
                payload_for(OutboxChannel(action.get("channel", "line")),
                            {k: str(v).replace("{name}", "x") for k, v in action.items()
                             if k in ("text", "subject")})
            except MessageContentInvalid as exc:
                raise JourneyInvalid(problem=str(exc.params.get("problem", ""))) from None
        elif kind == "coupon":
            if not action.get("campaign_id"):
                raise JourneyInvalid(problem="a coupon action names its campaign.")
        elif kind == "points":
            if not isinstance(action.get("points"), int) or not 0 < action["points"] <= 100_000:
                raise JourneyInvalid(problem="points are a whole number from 1 to 100,000.")
        else:
            raise JourneyInvalid(problem="actions are message, coupon or points.")


def create_journey(session: Session, actor: Actor, *, name: str, trigger: str,
                   wait_minutes: int = 0, condition: dict[str, Any] | None = None,
                   actions: list[dict[str, Any]]) -> Journey:
    actor.require(Permission.campaigns_manage)
    condition = condition or {}
    _check(trigger, wait_minutes, condition, actions)
    journey = Journey(tenant_id=actor.tenant_id, name=name.strip()[:120] or trigger,
                      trigger=trigger, wait_minutes=wait_minutes, condition=condition,
                      actions=actions, active=True)
    session.add(journey)
    session.flush()
    audit.record(session, actor, "journey.create", "journey", journey.id,
                 {"name": journey.name, "trigger": trigger})
    return journey


def from_template(session: Session, actor: Actor, template: str) -> Journey:
    from omniloop.core.i18n import gettext as translated  # the msgid is in TEMPLATES

    spec = TEMPLATES.get(template)
    if spec is None:
        raise JourneyInvalid(problem="unknown template.")
    return create_journey(session, actor, name=translated(str(spec["name"])),
                          trigger=spec["trigger"],
                          wait_minutes=spec["wait_minutes"], condition=dict(spec["condition"]),
                          actions=[dict(a) for a in spec["actions"]])


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
    journey = session.get(Journey, (actor.tenant_id, journey_id))
    if journey is None:
        from omniloop.core.errors import NotFound

        raise NotFound()
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
         action: dict[str, Any]) -> str:
    kind = action["kind"]
    if kind == "message":
        channel = OutboxChannel(action.get("channel", "line"))
        customer = session.get(Customer, (run.tenant_id, run.customer_id))
        name = (customer.name if customer is not None else None) or ""
        content = {k: str(v).replace("{name}", name) for k, v in action.items()
                   if k in ("text", "subject", "html")}
        queued = message_customer(session, actor, run.customer_id, channel,
                                  Purpose.marketing, f"journey:{run.id}:{index}", content)
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
                        outcome = _act(session, actor, run, index, action)
                except OmniloopError as exc:
                    failed = True
                    outcome = f"refused: {exc.code}"
                _step(run, f"action:{action['kind']}", outcome, now)
            run.status = JourneyRunStatus.failed if failed else JourneyRunStatus.done
        run.finished_at = now
        done += 1
    session.flush()
    return done
