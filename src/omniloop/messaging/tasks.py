"""Staff tasks that journeys create ("call the customer", "welcome them back in person").

A journey's `task` action writes one `StaffTask` per run and action, for the customer's home
store (none: the brand's). Staff see the open ones under *Messaging → Tasks* and on the
customer's 360 page, and mark them done; store-bound staff see their stores' tasks only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, NotFound
from omniloop.messaging.models import StaffTask, StaffTaskStatus
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("staff_task.done", N_("Staff task marked done"))


class StaffTaskNotFound(NotFound):
    code = "staff_task_not_found"
    message = N_("Task not found.")


def _visible(actor: Actor) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [StaffTask.tenant_id == actor.tenant_id]
    if actor.store_ids is not None:
        where.append(StaffTask.store_id.in_(actor.store_ids))
    return where


def list_tasks(session: Session, actor: Actor, status: StaffTaskStatus | None = None,
               limit: int = 200) -> list[StaffTask]:
    """Newest first; open ones by default is the caller's choice."""
    actor.require(Permission.customers_read)
    query = select(StaffTask).where(*_visible(actor))
    if status is not None:
        query = query.where(StaffTask.status == status)
    return list(session.scalars(query.order_by(StaffTask.created_at.desc(),
                                               StaffTask.id.desc()).limit(limit)))


def task_counts(session: Session, actor: Actor) -> dict[StaffTaskStatus, int]:
    actor.require(Permission.customers_read)
    counts = dict.fromkeys(StaffTaskStatus, 0)
    for state, count in session.execute(
            select(StaffTask.status, func.count()).where(*_visible(actor))
            .group_by(StaffTask.status)):
        counts[StaffTaskStatus(state)] = int(count)
    return counts


def tasks_of(session: Session, actor: Actor, customer_ids: set[str],
             status: StaffTaskStatus | None = StaffTaskStatus.open) -> list[StaffTask]:
    """A person's tasks (every profile merged into them), open ones by default."""
    actor.require(Permission.customers_read)
    query = select(StaffTask).where(*_visible(actor),
                                    StaffTask.customer_id.in_(customer_ids))
    if status is not None:
        query = query.where(StaffTask.status == status)
    return list(session.scalars(query.order_by(StaffTask.created_at.desc()).limit(50)))


def mark_done(session: Session, actor: Actor, task_id: str, *,
              now: datetime | None = None) -> StaffTask:
    """Done once: a second click (two people at once) changes nothing."""
    actor.require(Permission.customers_write)
    task = session.scalar(select(StaffTask).where(*_visible(actor),
                                                  StaffTask.id == task_id))
    if task is None:
        raise StaffTaskNotFound()
    now = now or utcnow()
    changed = session.execute(
        update(StaffTask).where(StaffTask.tenant_id == actor.tenant_id,
                                StaffTask.id == task.id,
                                StaffTask.status == StaffTaskStatus.open)
        .values(status=StaffTaskStatus.done, done_at=now, done_by=actor.label[:160])
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.refresh(task)
    if changed:
        audit.record(session, actor, "staff_task.done", "staff_task", task.id,
                     {"title": task.title})
    return task
