"""The audit log: who changed what, when. Every service that changes data writes here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from omniloop.core.db import Session
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import AuditEntry

# What each action is called on the audit page (an English msgid). Modules register the
# actions they write, so the audit page never needs to know every module.
_action_labels: dict[str, str] = {}


def register_action(action: str, label: str) -> None:
    _action_labels[action] = label


def action_label(action: str) -> str | None:
    return _action_labels.get(action)


def record(session: Session, actor: Actor, action: str, entity_type: str,
           entity_id: str | None, details: dict[str, Any] | None = None) -> AuditEntry:
    """Add an entry in the caller's transaction, so the log and the change commit together."""
    entry = AuditEntry(
        tenant_id=actor.tenant_id, actor_type=actor.kind, actor_id=actor.id,
        actor_label=actor.label, action=action, entity_type=entity_type, entity_id=entity_id,
        details=_jsonable(details or {}), ip=actor.ip,
    )
    session.add(entry)
    return entry


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{field: [old, new]} for the fields that differ."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def list_entries(session: Session, actor: Actor, *, limit: int = 100,
                 before: datetime | None = None, before_id: str | None = None,
                 entity_type: str | None = None,
                 entity_id: str | None = None) -> list[AuditEntry]:
    """Newest first. Page with the last entry's (`at`, `id`) as (`before`, `before_id`):
    entries sharing one timestamp are then neither skipped nor repeated."""
    actor.require(Permission.audit_read)
    query = select(AuditEntry).where(AuditEntry.tenant_id == actor.tenant_id)
    if before is not None and before_id is not None:
        query = query.where(or_(AuditEntry.at < before,
                                and_(AuditEntry.at == before, AuditEntry.id < before_id)))
    elif before is not None:
        query = query.where(AuditEntry.at < before)
    if entity_type:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(min(limit, 500))
    return list(session.scalars(query))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
