"""Low-score alerts: when feedback opens a service-recovery task, the store's managers get
an e-mail through messaging's outbox, in the transaction that stored the feedback.

Who: active staff with the store-manager or owner role bound to the task's store; when the
store has none (or the feedback names no store), the brand's active owners. Each gets one
transactional e-mail (quiet hours do not hold it) under the dedup key
`loops:alert:<task>:<staff>`, so a retried request sends nothing twice. It says the rating,
the NPS, the comment, the store, the receipt's staff label when the feedback came through a
receipt, and links to the task in the admin; in the staff member's language (else the
brand's).

When the brand has no e-mail channel set up, nothing is enqueued: the task list in the admin
is then the alert, as before messaging existed.
"""

from __future__ import annotations

from sqlalchemy import exists, select

from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import SUPPORTED_LOCALES, translations
from omniloop.core.settings import get_settings
from omniloop.loops.models import Feedback, RecoveryTask
from omniloop.messaging.models import OutboxChannel
from omniloop.messaging.service import channel_enabled, email_staff
from omniloop.tenancy.access import Actor
from omniloop.tenancy.models import Role, StaffStore, StaffUser, Store, Tenant

SUBJECT = N_("Low score at {store}: {rating}/5")
INTRO = N_("A customer left a low score. A service-recovery task is open for it.")
RATING = N_("Rating: {rating}/5")
NPS = N_("Recommendation score (NPS): {nps}/10")
NO_NPS = N_("Recommendation score (NPS): not given")
COMMENT = N_("Comment: {comment}")
NO_COMMENT = N_("Comment: none")
STORE = N_("Store: {store}")
NO_STORE = N_("Store: not known")
SERVED_BY = N_("Served by (receipt): {staff}")
OPEN_TASK = N_("Open the task: {url}")
MANAGERS = (Role.store_manager, Role.owner)


def recipients(session: Session, tenant_id: str, store_id: str | None) -> list[StaffUser]:
    """The store's managers (manager or owner role, bound to it), else the brand's owners."""
    if store_id is not None:
        bound = list(session.scalars(select(StaffUser).where(
            StaffUser.tenant_id == tenant_id, StaffUser.active.is_(True),
            StaffUser.role.in_(MANAGERS),
            exists().where(StaffStore.tenant_id == tenant_id,
                           StaffStore.staff_id == StaffUser.id,
                           StaffStore.store_id == store_id))
            .order_by(StaffUser.email)))
        if bound:
            return bound
    return list(session.scalars(select(StaffUser).where(
        StaffUser.tenant_id == tenant_id, StaffUser.active.is_(True),
        StaffUser.role == Role.owner).order_by(StaffUser.email)))


def task_url(task: RecoveryTask) -> str:
    return f"{get_settings().base_url.rstrip('/')}/admin/loops/feedback#task-{task.id}"


def alert_content(locale: str, task: RecoveryTask, feedback: Feedback,
                  store_name: str | None) -> dict[str, str]:
    """The e-mail's subject and text in `locale`."""
    _ = translations(locale if locale in SUPPORTED_LOCALES else "zh_TW").gettext
    lines = [_(INTRO), "",
             _(RATING).format(rating=feedback.rating),
             _(NPS).format(nps=feedback.nps) if feedback.nps is not None else _(NO_NPS),
             _(COMMENT).format(comment=feedback.comment) if feedback.comment
             else _(NO_COMMENT),
             _(STORE).format(store=store_name) if store_name else _(NO_STORE)]
    if feedback.staff_label:
        lines.append(_(SERVED_BY).format(staff=feedback.staff_label))
    lines += ["", _(OPEN_TASK).format(url=task_url(task))]
    return {"subject": _(SUBJECT).format(store=store_name or "—", rating=feedback.rating),
            "text": "\n".join(lines)}


def alert_low_score(session: Session, actor: Actor, task: RecoveryTask,
                    feedback: Feedback) -> list[str]:
    """Enqueue the alert e-mails for a new task; answers the outbox ids written."""
    tenant_id = actor.tenant_id
    if not channel_enabled(session, tenant_id, OutboxChannel.email):
        return []
    store = session.get(Store, (tenant_id, task.store_id)) if task.store_id else None
    brand_locale = session.get_one(Tenant, tenant_id).locale
    written = []
    for staff in recipients(session, tenant_id, task.store_id):
        content = alert_content(staff.locale or brand_locale, task, feedback,
                                store.name if store else None)
        message_id = email_staff(session, actor, staff.email,
                                 f"loops:alert:{task.id}:{staff.id}", content)
        if message_id is not None:
            written.append(message_id)
    return written
