"""The transactional outbox: `enqueue` writes a message in the caller's transaction.

A message exists exactly when the change that caused it committed: it is a row in the same
transaction, so a rollback takes it back and a crash after the commit loses nothing (the
worker finds the row). Each message carries a dedup key per recipient and purpose
("welcome:<customer>", "send:<send>:<customer>"): enqueueing it again writes nothing, so
callers may retry freely.

After a commit that enqueued something, the worker is woken (`set_waker`; by default a Huey
task, see worker.py). The wake-up is only a hint: the worker also polls, so a lost wake-up
delays a message, never drops it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session, after_commit
from omniloop.core.ids import new_ids
from omniloop.messaging.errors import MessageNotFound, MessageNotReplayable
from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus, Purpose
from omniloop.tenancy.access import Actor, Permission

_OUTBOX = cast(Table, OutboxMessage.__table__)
_CHUNK = 5_000


@dataclass(frozen=True)
class Draft:
    """One message to enqueue. `payload` is channel-specific (see senders.py)."""

    channel: OutboxChannel
    purpose: Purpose
    recipient: str
    dedup_key: str
    payload: dict[str, Any]
    customer_id: str | None = None
    send_id: str | None = None
    not_before: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def content_key(payload: dict[str, Any]) -> str:
    """Equal payloads, equal keys: LINE rows with one key can share a multicast."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def enqueue(session: Session, actor: Actor, draft: Draft) -> str | None:
    """Write one message into the outbox, in the caller's transaction.

    Answers the new message's id, or None when a message with the same dedup key already
    exists (it was enqueued before: nothing is written twice).
    """
    inserted = enqueue_many(session, actor, [draft])
    return inserted[0] if inserted else None


def enqueue_many(session: Session, actor: Actor, drafts: Sequence[Draft]) -> list[str]:
    """Write many messages at once (a campaign send); answers the ids of those written.

    Dedup keys already present are left out; a concurrent writer of the same key loses
    quietly (INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL alike).
    """
    if not drafts:
        return []
    tenant_id = actor.tenant_id
    unique: dict[str, Draft] = {}
    for draft in drafts:
        unique.setdefault(draft.dedup_key, draft)
    keys = list(unique)
    existing: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        existing.update(session.scalars(select(OutboxMessage.dedup_key).where(
            OutboxMessage.tenant_id == tenant_id,
            OutboxMessage.dedup_key.in_(keys[start:start + _CHUNK]))))
    fresh = [unique[key] for key in keys if key not in existing]
    if not fresh:
        return []
    ids = new_ids(len(fresh))
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    now = _bound(dialect, "created_at", utcnow())
    # Each distinct payload is serialised once (a campaign's card is one payload for every
    # recipient), with its content key.
    serialised: dict[int, tuple[str, str]] = {}
    rows = []
    for message_id, draft in zip(ids, fresh, strict=True):
        known = serialised.get(id(draft.payload))
        if known is None:
            known = serialised[id(draft.payload)] = (
                json.dumps(draft.payload, ensure_ascii=False, separators=(",", ":")),
                content_key(draft.payload))
        rows.append((tenant_id, message_id, draft.channel.value, draft.purpose.value,
                     draft.customer_id, draft.recipient, draft.dedup_key, known[1], known[0],
                     OutboxStatus.pending.value, 0,
                     _bound(dialect, "next_attempt_at", draft.not_before) if draft.not_before
                     else now, draft.send_id, now))
    # The DB-API's executemany straight away: per-row parameter processing in SQLAlchemy
    # costs more than the INSERT itself at campaign sizes (100,000 rows). Values are bound
    # as the columns' types bind them; ON CONFLICT DO NOTHING (SQLite and PostgreSQL) lets a
    # concurrent writer of the same dedup key win quietly.
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    statement = (f"INSERT INTO outbox_messages ({', '.join(_INSERT_COLUMNS)}) "
                 f"VALUES ({', '.join([mark] * len(_INSERT_COLUMNS))}) "
                 "ON CONFLICT (tenant_id, dedup_key) DO NOTHING")
    for start in range(0, len(rows), _CHUNK):
        connection.exec_driver_sql(statement, rows[start:start + _CHUNK])
    after_commit(session, _wake)
    return ids


_INSERT_COLUMNS = ("tenant_id", "id", "channel", "purpose", "customer_id", "recipient",
                   "dedup_key", "group_key", "payload", "status", "attempts", "next_attempt_at",
                   "send_id", "created_at")


def _bound(dialect: Any, column: str, value: Any) -> Any:
    """`value` as SQLAlchemy would bind it to `column` (SQLite stores datetimes as text)."""
    processor = _OUTBOX.c[column].type.bind_processor(dialect)
    return processor(value) if processor is not None else value


# --- waking the worker after commit -------------------------------------------------------

_waker: Callable[[], None] | None = None


def set_waker(waker: Callable[[], None] | None) -> None:
    """Who to tell that messages were committed (worker.py installs the Huey wake-up)."""
    global _waker
    _waker = waker


def _wake() -> None:
    # A hint: the worker also polls (a failure is logged by core.db.run_after_commit).
    if _waker is not None:
        _waker()


# --- reading and replaying ----------------------------------------------------------------


def get_message(session: Session, actor: Actor, message_id: str) -> OutboxMessage:
    actor.require(Permission.campaigns_read)
    message = session.get(OutboxMessage, (actor.tenant_id, message_id))
    if message is None:
        raise MessageNotFound()
    return message


def list_messages(session: Session, actor: Actor, *, status: OutboxStatus | None = None,
                  channel: OutboxChannel | None = None, send_id: str | None = None,
                  limit: int = 100) -> list[OutboxMessage]:
    actor.require(Permission.campaigns_read)
    query = select(OutboxMessage).where(OutboxMessage.tenant_id == actor.tenant_id)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    if channel is not None:
        query = query.where(OutboxMessage.channel == channel)
    if send_id is not None:
        query = query.where(OutboxMessage.send_id == send_id)
    return list(session.scalars(query.order_by(OutboxMessage.id.desc()).limit(limit)))


def status_counts(session: Session, actor: Actor, *,
                  send_id: str | None = None) -> dict[OutboxStatus, int]:
    """How many messages are in each state (all of the brand's, or one send's)."""
    actor.require(Permission.campaigns_read)
    query = (select(OutboxMessage.status, func.count())
             .where(OutboxMessage.tenant_id == actor.tenant_id)
             .group_by(OutboxMessage.status))
    if send_id is not None:
        query = query.where(OutboxMessage.send_id == send_id)
    counts = dict.fromkeys(OutboxStatus, 0)
    for status, count in session.execute(query):
        counts[OutboxStatus(status)] = int(count)
    return counts


@dataclass(frozen=True)
class Engagement:
    """What the people of a send did with its e-mails (`messaging.tracking`)."""

    sent: int
    opened: int
    clicked: int  # messages with a click
    clicks: int  # every click

    def share(self, count: int) -> float | None:
        return count / self.sent if self.sent else None


def engagement(session: Session, actor: Actor, send_id: str) -> Engagement:
    """Opens and clicks of one send's messages, counted per message."""
    actor.require(Permission.campaigns_read)
    sent, opened, clicked, clicks = session.execute(
        select(func.count(OutboxMessage.sent_at), func.count(OutboxMessage.opened_at),
               func.count(OutboxMessage.clicked_at),
               func.coalesce(func.sum(OutboxMessage.clicks), 0))
        .where(OutboxMessage.tenant_id == actor.tenant_id,
               OutboxMessage.send_id == send_id)).one()
    return Engagement(int(sent), int(opened), int(clicked), int(clicks))


def status_counts_by_send(session: Session, actor: Actor,
                          send_ids: Iterable[str]) -> dict[str, dict[OutboxStatus, int]]:
    """`status_counts` of several sends in one query (the overview lists 50)."""
    actor.require(Permission.campaigns_read)
    counts = {send_id: dict.fromkeys(OutboxStatus, 0) for send_id in send_ids}
    if not counts:
        return counts
    for send_id, status, count in session.execute(
            select(OutboxMessage.send_id, OutboxMessage.status, func.count())
            .where(OutboxMessage.tenant_id == actor.tenant_id,
                   OutboxMessage.send_id.in_(list(counts)))
            .group_by(OutboxMessage.send_id, OutboxMessage.status)):
        counts[str(send_id)][OutboxStatus(status)] = int(count)
    return counts


def replay(session: Session, actor: Actor, message_ids: Iterable[str],
           now: datetime | None = None) -> int:
    """Send dead letters again: back to pending, tries counted afresh.

    A replayed LINE message leaves its old multicast (its retry key belonged to a request
    LINE never accepted, and the rest of that batch may be replayed separately).
    """
    actor.require(Permission.campaigns_manage)
    ids = list(dict.fromkeys(message_ids))
    statuses: dict[str, OutboxStatus] = dict(session.execute(
        select(OutboxMessage.id, OutboxMessage.status).where(
            OutboxMessage.tenant_id == actor.tenant_id, OutboxMessage.id.in_(ids))).all())
    for message_id in ids:
        status = statuses.get(message_id)
        if status is None:
            raise MessageNotFound()
        if OutboxStatus(status) is not OutboxStatus.dead:
            raise MessageNotReplayable(status=OutboxStatus(status).value)
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.tenant_id == actor.tenant_id, OutboxMessage.id.in_(ids),
               OutboxMessage.status == OutboxStatus.dead)
        .values(status=OutboxStatus.pending, attempts=0, next_attempt_at=now or utcnow(),
                batch_id=None, lease_id=None, lease_until=None, last_error=None, reason=None)
        .execution_options(synchronize_session=False))
    from omniloop.tenancy import audit

    audit.record(session, actor, "messaging.replay", "outbox_message",
                 ids[0] if len(ids) == 1 else None, {"messages": len(ids)})
    after_commit(session, _wake)
    return int(result.rowcount)  # type: ignore[attr-defined]
