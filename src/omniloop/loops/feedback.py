"""Feedback after a visit, the receipt QR that ties it to the visit, and service recovery.

* A rating (1–5) is required; a recommendation score (NPS, 0–10) and a comment are optional.
* A receipt QR carries a `receipt` token (core/tokens.py, Ed25519, per brand) whose subject is
  a receipt row naming the order, its store and the staff member. Altered or foreign tokens
  are refused; one feedback per receipt.
* A score at or below the brand's marks opens a service-recovery task for the store, and
  e-mails the store's managers through messaging's outbox (loops/alerts.py). The
  make-good coupon is offered from the task by a person, not handed out by the form: a form
  that paid for low scores would reward them.
* Every respondent, whatever the score, is invited to post a public review (no gating; see
  docs/loops.md for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns import claims
from omniloop.campaigns.errors import CouponRefused
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import gettext
from omniloop.core.settings import get_settings
from omniloop.core.signals import Signal
from omniloop.core.tokens import (
    TokenExpired,
    TokenInvalid,
    TokenKind,
    TokenWrongKind,
    TokenWrongTenant,
    sign_token,
    verify_token,
)
from omniloop.customers.events import record_event
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.profiles import profile_ids, survivor_ids
from omniloop.loops.alerts import alert_low_score
from omniloop.loops.errors import (
    CommentTooLong,
    FeedbackAlreadyGiven,
    MakeGoodUnavailable,
    NpsOutOfRange,
    OrderNotFoundForReceipt,
    RatingOutOfRange,
    ReceiptExpired,
    ReceiptRefused,
    TaskNotFound,
)
from omniloop.loops.models import Feedback, Receipt, RecoveryTask, TaskStatus
from omniloop.loops.program import get_program
from omniloop.orders.models import Order
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("recovery.update", N_("Service-recovery task updated"))
audit.register_action("recovery.make_good", N_("Make-good coupon offered"))

# Sent in the feedback's transaction when its score is at or under the brand's marks
# (listeners connect in omniloop.wiring: messaging's low_feedback journeys).
low_feedback_given: Signal[[Session, Actor, Feedback]] = Signal("low_feedback_given")

MAX_COMMENT = 2000
RECEIPT_DAYS = 30  # a receipt QR takes feedback for a month after the visit

STATUS_LABELS: dict[TaskStatus, str] = {
    TaskStatus.open: N_("Open"),
    TaskStatus.in_progress: N_("In progress"),
    TaskStatus.resolved: N_("Resolved"),
}


# --- receipts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedReceipt:
    receipt: Receipt
    token: str


def issue_receipt(session: Session, actor: Actor, order_id: str, staff: str = "", *,
                  now: datetime | None = None) -> IssuedReceipt:
    """The receipt QR's token for an order (the same receipt row when asked again)."""
    actor.require(Permission.pos_use)
    now = now or utcnow()
    order = session.get(Order, (actor.tenant_id, order_id))
    if order is None or (order.store_id is not None and not actor.sees_store(order.store_id)):
        raise OrderNotFoundForReceipt()
    receipt = session.scalar(select(Receipt).where(Receipt.tenant_id == actor.tenant_id,
                                                   Receipt.order_id == order.id))
    if receipt is None:
        try:
            with session.begin_nested():
                receipt = Receipt(tenant_id=actor.tenant_id, order_id=order.id,
                                  store_id=order.store_id, staff_label=staff.strip()[:80])
                session.add(receipt)
                session.flush()
        except IntegrityError:  # issued concurrently for the same order
            receipt = session.scalar(select(Receipt).where(
                Receipt.tenant_id == actor.tenant_id, Receipt.order_id == order.id))
            assert receipt is not None
    token = sign_token(actor.tenant_id, TokenKind.RECEIPT, receipt.id,
                       now + timedelta(days=RECEIPT_DAYS))
    return IssuedReceipt(receipt=receipt, token=token)


def receipt_from_token(session: Session, tenant_id: str, token: str) -> Receipt:
    """The receipt a genuine token of this brand names; altered or foreign ones refused."""
    try:
        claims_ = verify_token(token, tenant_id=tenant_id, kind=TokenKind.RECEIPT)
    except TokenExpired as error:
        raise ReceiptExpired() from error
    except (TokenInvalid, TokenWrongTenant, TokenWrongKind) as error:
        raise ReceiptRefused() from error
    receipt = session.get(Receipt, (tenant_id, claims_.subject_id))
    if receipt is None:
        raise ReceiptRefused()
    return receipt


# --- feedback ---------------------------------------------------------------------------------


def check_answers(rating: object, nps: object, comment: str) -> tuple[int, int | None, str]:
    """The answers as stored, or the refusal that names what is wrong."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise RatingOutOfRange(field="rating")
    if nps is not None and (isinstance(nps, bool) or not isinstance(nps, int)
                            or not 0 <= nps <= 10):
        raise NpsOutOfRange(field="nps")
    text = comment.strip()
    if len(text) > MAX_COMMENT:
        raise CommentTooLong(field="comment", limit=MAX_COMMENT)
    return rating, nps, text


@dataclass(frozen=True)
class FeedbackResult:
    feedback: Feedback
    task: RecoveryTask | None


def submit_feedback(session: Session, actor: Actor, *, customer_id: str, rating: object,
                    nps: object, comment: str, store_id: str | None,
                    touchpoint_id: str | None, receipt: Receipt | None = None,
                    now: datetime | None = None) -> FeedbackResult:
    actor.require(Permission.customers_write)
    rating_, nps_, text = check_answers(rating, nps, comment)
    now = now or utcnow()
    if receipt is not None:
        store_id = receipt.store_id or store_id
    feedback = Feedback(tenant_id=actor.tenant_id, store_id=store_id,
                        touchpoint_id=touchpoint_id, customer_id=customer_id, rating=rating_,
                        nps=nps_, comment=text, receipt_id=receipt.id if receipt else None,
                        order_id=receipt.order_id if receipt else None,
                        staff_label=receipt.staff_label if receipt else "", created_at=now)
    try:
        with session.begin_nested():
            session.add(feedback)
            session.flush()
    except IntegrityError as error:
        raise FeedbackAlreadyGiven() from error
    record_event(session, actor, client_event_id=f"feedback:{feedback.id}",
                 type="feedback_submitted", channel="online", source="touchpoint",
                 customer_id=customer_id, store_id=store_id, occurred_at=now,
                 properties={"feedback_id": feedback.id, "rating": rating_, "nps": nps_,
                             "touchpoint_id": touchpoint_id})
    program = get_program(session, actor.tenant_id)
    task = None
    if rating_ <= program.low_rating or (nps_ is not None and nps_ <= program.low_nps):
        task = RecoveryTask(tenant_id=actor.tenant_id, feedback_id=feedback.id,
                            store_id=store_id, customer_id=customer_id, created_at=now)
        session.add(task)
        session.flush()
        alert_low_score(session, actor, task, feedback)
        low_feedback_given.send(session, actor, feedback)
    return FeedbackResult(feedback=feedback, task=task)


# --- service recovery -------------------------------------------------------------------------


def list_tasks(session: Session, actor: Actor, status: TaskStatus | None = None,
               limit: int = 200) -> list[tuple[RecoveryTask, Feedback]]:
    actor.require(Permission.campaigns_read)
    query = (select(RecoveryTask, Feedback)
             .join(Feedback, (Feedback.tenant_id == RecoveryTask.tenant_id)
                   & (Feedback.id == RecoveryTask.feedback_id))
             .where(RecoveryTask.tenant_id == actor.tenant_id))
    if status is not None:
        query = query.where(RecoveryTask.status == status)
    if actor.store_ids is not None:
        query = query.where(RecoveryTask.store_id.in_(actor.store_ids))
    rows = session.execute(query.order_by(RecoveryTask.created_at.desc()).limit(limit)).all()
    return [(task, feedback) for task, feedback in rows]


def list_feedback(session: Session, actor: Actor, limit: int = 200) -> list[Feedback]:
    actor.require(Permission.campaigns_read)
    query = select(Feedback).where(Feedback.tenant_id == actor.tenant_id)
    if actor.store_ids is not None:
        query = query.where(Feedback.store_id.in_(actor.store_ids))
    return list(session.scalars(query.order_by(Feedback.created_at.desc()).limit(limit)))


def _task(session: Session, actor: Actor, task_id: str) -> RecoveryTask:
    task = session.get(RecoveryTask, (actor.tenant_id, task_id))
    if task is None or (task.store_id is not None and not actor.sees_store(task.store_id)):
        raise TaskNotFound()
    return task


def update_task(session: Session, actor: Actor, task_id: str, status: TaskStatus,
                note: str) -> RecoveryTask:
    actor.require(Permission.customers_write)
    task = _task(session, actor, task_id)
    task.status = status
    task.note = note.strip()[:2000]
    session.flush()
    audit.record(session, actor, "recovery.update", "recovery_task", task.id,
                 {"status": status.value})
    return task


def offer_make_good(session: Session, actor: Actor, task_id: str) -> RecoveryTask:
    """Put the brand's make-good coupon into the respondent's wallet, once per task."""
    actor.require(Permission.customers_write)
    task = _task(session, actor, task_id)
    if task.make_good_coupon_id is not None:
        return task
    program = get_program(session, actor.tenant_id)
    if not program.make_good_campaign_id:
        raise MakeGoodUnavailable(reason=gettext("no make-good campaign is set."))
    survivor = survivor_ids(session, actor.tenant_id, [task.customer_id])[task.customer_id]
    phone = session.scalar(select(CustomerIdentity.value).where(
        CustomerIdentity.tenant_id == actor.tenant_id,
        CustomerIdentity.customer_id.in_(profile_ids(session, actor.tenant_id, survivor)),
        CustomerIdentity.kind == IdentityKind.phone))
    if phone is None:
        raise MakeGoodUnavailable(reason=gettext("the respondent left no phone number."))
    try:
        with session.begin_nested():
            result = claims.issue_coupon(
                session, actor, program.make_good_campaign_id,
                session.get_one(Customer, (actor.tenant_id, survivor)), channel="qr")
    except CouponRefused as error:
        raise MakeGoodUnavailable(reason=error.localized()) from error
    task.make_good_coupon_id = result.coupon.id
    if task.status == TaskStatus.open:
        task.status = TaskStatus.in_progress
    session.flush()
    audit.record(session, actor, "recovery.make_good", "recovery_task", task.id,
                 {"coupon_id": result.coupon.id})
    return task


def receipt_url(code: str, token: str) -> str:
    """The receipt QR's URL: the store's receipt touchpoint with the signed token."""
    return f"{get_settings().base_url.rstrip('/')}/t/{code}?r={token}"
