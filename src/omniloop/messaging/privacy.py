"""Messaging's part of the personal-data export and erasure (customers.privacy registries).

The outbox holds addresses (LINE ids, e-mails, phones) and message texts; erasure blanks them
on every message of the person and stops those not yet sent, and journey runs still waiting
for the person are skipped; staff tasks about the person lose their titles (they may name
them) and are closed. The export lists what was sent to the person, and when, and the tasks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_erase_step, register_export_section
from omniloop.messaging.models import (
    JourneyRun,
    JourneyRunStatus,
    OutboxMessage,
    OutboxStatus,
    StaffTask,
    StaffTaskStatus,
)
from omniloop.tenancy.access import Actor

ERASED = "erased"


def _export(session: Session, actor: Actor, _customer: Customer, ids: set[str]) -> Any:
    return [{"id": m.id, "channel": m.channel.value, "purpose": m.purpose.value,
             "status": m.status.value, "created_at": as_utc(m.created_at).isoformat(),
             "sent_at": as_utc(m.sent_at).isoformat() if m.sent_at else None,
             "content": m.payload}
            for m in session.scalars(select(OutboxMessage).where(
                OutboxMessage.tenant_id == actor.tenant_id,
                OutboxMessage.customer_id.in_(ids)).order_by(OutboxMessage.id))]


def _erase(session: Session, actor: Actor, _customer: Customer, ids: set[str]) -> int:
    where = (OutboxMessage.tenant_id == actor.tenant_id, OutboxMessage.customer_id.in_(ids))
    session.execute(update(OutboxMessage).where(
        *where, OutboxMessage.status.in_([OutboxStatus.pending, OutboxStatus.sending]))
        .values(status=OutboxStatus.skipped, reason=ERASED, lease_id=None, lease_until=None)
        .execution_options(synchronize_session=False))
    changed = session.execute(update(OutboxMessage).where(*where).values(
        recipient=ERASED, payload={}, last_error=None)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.execute(update(JourneyRun).where(
        JourneyRun.tenant_id == actor.tenant_id, JourneyRun.customer_id.in_(ids),
        JourneyRun.status == JourneyRunStatus.waiting)
        .values(status=JourneyRunStatus.skipped, finished_at=utcnow())
        .execution_options(synchronize_session=False))
    tasks = (StaffTask.tenant_id == actor.tenant_id, StaffTask.customer_id.in_(ids))
    session.execute(update(StaffTask).where(*tasks, StaffTask.status == StaffTaskStatus.open)
                    .values(status=StaffTaskStatus.done, done_at=utcnow(), done_by=ERASED)
                    .execution_options(synchronize_session=False))
    session.execute(update(StaffTask).where(*tasks).values(title=ERASED)
                    .execution_options(synchronize_session=False))
    return int(changed or 0)


def _export_tasks(session: Session, actor: Actor, _customer: Customer, ids: set[str]) -> Any:
    return [{"id": t.id, "title": t.title, "status": t.status.value,
             "created_at": as_utc(t.created_at).isoformat(),
             "done_at": as_utc(t.done_at).isoformat() if t.done_at else None}
            for t in session.scalars(select(StaffTask).where(
                StaffTask.tenant_id == actor.tenant_id,
                StaffTask.customer_id.in_(ids)).order_by(StaffTask.id))]


register_export_section("messages", _export)
register_export_section("staff_tasks", _export_tasks)
register_erase_step("messages", _erase)
