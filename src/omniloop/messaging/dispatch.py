"""The worker's loop: claim due messages, apply the sending rules, send, record.

One round (`Dispatcher.run_once`) runs three short transactions with the network calls
between them, never inside one:

1. **Claim.** Due rows (pending and due, or "sending" whose lease ran out because a worker
   died) are taken with a conditional UPDATE that sets a fresh lease id; only rows that
   update belong to this worker, so several workers never send the same row at once. Then
   the rules for marketing messages, checked at send time (not at enqueue time, because
   consent and the clock change in between):
   * quiet hours in the brand's time zone: the row waits until they end (not a try);
   * consent for the channel (customers.consent): skipped without it;
   * the weekly cap of marketing messages per customer: skipped over it.
   LINE rows with the same content are grouped into multicasts of at most 500, and the
   batch id is stored on the rows *before* anything is sent, so a re-send after a crash
   rebuilds the same request with the same X-Line-Retry-Key.
2. **Send** each unit (a multicast batch or one message) in a small thread pool, within the
   brand's per-channel rate limit.
3. **Record**: sent; or back to pending with exponential backoff; or a dead letter after the
   last try (or a refusal for good). Updates are conditional on the lease id, so a worker
   that lost its lease cannot overwrite what its successor recorded.

A crash anywhere leaves rows "sending" with a lease that runs out; the next round takes
them over and re-sends with the same keys, and the receiver (LINE's retry key, the SMS
provider's Idempotency-Key, the e-mail Message-ID, the webhook-id) drops the duplicate:
every message is delivered once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Database, Session
from omniloop.core.ids import new_id
from omniloop.core.ratelimit import RateLimiter, get_rate_limiter
from omniloop.core.settings import get_settings
from omniloop.customers.consent import list_unsubscribe_headers, may_message
from omniloop.customers.models import Channel, ConsentStatus, Customer, CustomerConsent
from omniloop.messaging import channels, crypto, tracking, webhooks
from omniloop.messaging.errors import ChannelNotConfigured, CredentialsUnreadable
from omniloop.messaging.models import (
    ChannelConfig,
    OutboxChannel,
    OutboxMessage,
    OutboxStatus,
    Purpose,
    WebhookEndpoint,
)
from omniloop.messaging.senders import (
    MAX_MULTICAST,
    EmailSender,
    LineSender,
    Outcome,
    Recipient,
    SmsSender,
    SmtpConfig,
    WebhookSender,
)
from omniloop.messaging.service import CONSENT_CHANNEL
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant

log = logging.getLogger("omniloop.messaging")

_IN_CHUNK = 2_000


@dataclass(frozen=True)
class DispatchConfig:
    max_attempts: int = 6
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lease_seconds: int = 120
    claim_size: int = 5000
    send_threads: int = 4
    rates: dict[str, int] = field(default_factory=lambda: {
        "line": 1000, "email": 20, "sms": 20, "webhook": 50})
    line_base_url: str = "https://api.line.me"

    @classmethod
    def from_settings(cls) -> DispatchConfig:
        s = get_settings()
        return cls(max_attempts=s.messaging_max_attempts,
                   retry_base_seconds=s.messaging_retry_base_seconds,
                   retry_max_seconds=s.messaging_retry_max_seconds,
                   lease_seconds=s.messaging_lease_seconds,
                   claim_size=s.messaging_claim_size, send_threads=s.messaging_send_threads,
                   rates=dict(s.messaging_rate_per_second), line_base_url=s.line_api_base_url)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after `attempts` tries: base·2^(n−1), capped, with up
        to 10 % jitter so a crowd of failures does not come back at one instant; never less
        than the receiver's Retry-After."""
        delay = min(self.retry_base_seconds * 2.0 ** max(0, attempts - 1),
                    self.retry_max_seconds)
        delay *= 1.0 + random.random() * 0.1
        return max(delay, retry_after or 0.0)


@dataclass
class Row:
    id: str
    tenant_id: str
    channel: OutboxChannel
    purpose: Purpose
    customer_id: str | None
    recipient: str
    group_key: str
    payload: dict[str, Any]
    attempts: int
    batch_id: str | None


@dataclass
class Unit:
    """What goes out in one request: a multicast batch, or one message."""

    tenant_id: str
    channel: OutboxChannel
    unit_id: str
    lease_id: str
    rows: list[Row]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    deferred: int = 0
    requests: int = 0

    def add(self, other: Report) -> None:
        for name in ("claimed", "sent", "retried", "dead", "skipped", "deferred", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _due(now: datetime) -> Any:
    return or_(and_(OutboxMessage.status == OutboxStatus.pending,
                    OutboxMessage.next_attempt_at <= now),
               and_(OutboxMessage.status == OutboxStatus.sending,
                    OutboxMessage.lease_until <= now))


def _chunks(values: list[str], size: int = _IN_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def consenting(session: Session, tenant_id: str, customer_ids: Iterable[str],
               channel: Channel) -> set[str]:
    """Which of these customers may get marketing on `channel` now (consent.may_message,
    in bulk). Plain profiles are read in one query; profiles touched by merges (or unknown
    ones) take may_message's full path, which reads across the merged profiles."""
    ids = list(dict.fromkeys(customer_ids))
    allowed: set[str] = set()
    for chunk in _chunks(ids):
        plain = {cid for cid, merged_into, erased in session.execute(
            select(Customer.id, Customer.merged_into_id, Customer.erased_at).where(
                Customer.tenant_id == tenant_id, Customer.id.in_(chunk)))
            if merged_into is None and erased is None}
        survivors = set(session.scalars(select(Customer.merged_into_id).where(
            Customer.tenant_id == tenant_id, Customer.merged_into_id.in_(chunk))))
        simple = plain - survivors
        allowed.update(session.scalars(select(CustomerConsent.customer_id).where(
            CustomerConsent.tenant_id == tenant_id, CustomerConsent.customer_id.in_(simple),
            CustomerConsent.channel == channel,
            CustomerConsent.status == ConsentStatus.opted_in)))
        for cid in chunk:
            if cid not in simple and may_message(session, tenant_id, cid, channel):
                allowed.add(cid)
    return allowed


class Dispatcher:
    """Sends what the outbox holds. One per worker process; `run_once` may be called from
    several threads or processes at once (claims never overlap)."""

    def __init__(self, database: Database, config: DispatchConfig | None = None, *,
                 clock: Callable[[], datetime] = utcnow,
                 limiter: RateLimiter | None = None) -> None:
        self.database = database
        self.config = config or DispatchConfig.from_settings()
        self.clock = clock
        self._limiter = limiter
        self._senders: dict[tuple[str, OutboxChannel, str], Any] = {}
        self._senders_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.config.send_threads),
                                        thread_name_prefix="omniloop-send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for sender in self._senders.values():
            if hasattr(sender, "close"):
                sender.close()
        self._senders.clear()

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter or get_rate_limiter()

    # --- the loop -----------------------------------------------------------------------

    def drain(self, *, max_rounds: int | None = None) -> Report:
        """Rounds until nothing is due now."""
        total = Report()
        rounds = 0
        while max_rounds is None or rounds < max_rounds:
            report = self.run_once()
            total.add(report)
            rounds += 1
            if report.claimed == 0:
                break
        return total

    def run_once(self) -> Report:
        now = self.clock()
        report = Report()
        units = self._claim(now, report)
        if not units:
            return report
        outcomes = list(self._pool.map(self._send, units))
        report.requests += len(units)
        self._record(units, outcomes, report)
        return report

    def next_due(self) -> datetime | None:
        """When a message will next be due (for scheduling the next round)."""
        with self.database.unit_of_work(write=False) as session:
            pending = session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.status == OutboxStatus.pending))
            leased = session.scalar(select(func.min(OutboxMessage.lease_until)).where(
                OutboxMessage.status == OutboxStatus.sending))
        times = [as_utc(t) for t in (pending, leased) if t is not None]
        return min(times) if times else None

    # --- 1. claim -----------------------------------------------------------------------

    def _claim(self, now: datetime, report: Report) -> list[Unit]:
        config = self.config
        with self.database.unit_of_work() as session:
            candidates = session.execute(
                select(OutboxMessage.tenant_id, OutboxMessage.id, OutboxMessage.batch_id)
                .where(_due(now)).order_by(OutboxMessage.next_attempt_at)
                .limit(config.claim_size)).all()
            if not candidates:
                return []
            by_tenant: dict[str, tuple[list[str], set[str]]] = defaultdict(
                lambda: ([], set()))
            for tenant_id, message_id, batch_id in candidates:
                ids, batches = by_tenant[tenant_id]
                ids.append(message_id)
                if batch_id:
                    batches.add(batch_id)
            lease_id = new_id()
            lease_until = now + timedelta(seconds=config.lease_seconds)
            units: list[Unit] = []
            for tenant_id, (ids, batches) in by_tenant.items():
                rows = self._take(session, tenant_id, ids, sorted(batches), lease_id,
                                  lease_until, now)
                report.claimed += len(rows)
                rows = self._apply_rules(session, tenant_id, rows, lease_id, now, report)
                units.extend(self._units(session, tenant_id, rows, lease_id))
        return units

    def _take(self, session: Session, tenant_id: str, ids: list[str], batches: list[str],
              lease_id: str, lease_until: datetime, now: datetime) -> list[Row]:
        """Lease the rows (whole multicast batches, never part of one) and read them."""
        claimed: list[Row] = []
        groups: list[Any] = [OutboxMessage.id.in_(chunk) for chunk in _chunks(ids)]
        groups += [OutboxMessage.batch_id.in_(chunk) for chunk in _chunks(batches)]
        for where in groups:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.tenant_id == tenant_id, where, _due(now))
                .values(status=OutboxStatus.sending, lease_id=lease_id,
                        lease_until=lease_until, attempts=OutboxMessage.attempts + 1)
                .execution_options(synchronize_session=False))
        seen: set[str] = set()
        for where in groups:
            for r in session.execute(select(
                    OutboxMessage.id, OutboxMessage.channel, OutboxMessage.purpose,
                    OutboxMessage.customer_id, OutboxMessage.recipient,
                    OutboxMessage.group_key, OutboxMessage.payload, OutboxMessage.attempts,
                    OutboxMessage.batch_id).where(
                    OutboxMessage.tenant_id == tenant_id, where,
                    OutboxMessage.lease_id == lease_id,
                    OutboxMessage.status == OutboxStatus.sending)):
                if r.id in seen:
                    continue
                seen.add(r.id)
                claimed.append(Row(id=r.id, tenant_id=tenant_id,
                                   channel=OutboxChannel(r.channel), purpose=Purpose(r.purpose),
                                   customer_id=r.customer_id, recipient=r.recipient,
                                   group_key=r.group_key, payload=r.payload,
                                   attempts=r.attempts, batch_id=r.batch_id))
        claimed.sort(key=lambda row: row.id)
        return claimed

    def _set(self, session: Session, tenant_id: str, ids: list[str], held_by: str, /,
             **values: Any) -> None:
        """Update rows this worker still holds (`held_by`: its lease id)."""
        for chunk in _chunks(ids):
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.id.in_(chunk),
                       OutboxMessage.lease_id == held_by)
                .values(**values).execution_options(synchronize_session=False))

    def _apply_rules(self, session: Session, tenant_id: str, rows: list[Row], lease_id: str,
                     now: datetime, report: Report) -> list[Row]:
        marketing = [r for r in rows if r.purpose is Purpose.marketing]
        if not marketing:
            return rows
        rules = channels.rules_of(session, tenant_id)
        tenant = session.get_one(Tenant, tenant_id)
        until = channels.quiet_until(now, tenant.timezone, rules.quiet_start, rules.quiet_end)
        if until is not None:
            # Quiet hours are a wait, not a try: the attempt taken by the claim is given back.
            self._set(session, tenant_id, [r.id for r in marketing], lease_id,
                      status=OutboxStatus.pending, next_attempt_at=until, lease_id=None,
                      lease_until=None, attempts=OutboxMessage.attempts - 1)
            report.deferred += len(marketing)
            return [r for r in rows if r.purpose is not Purpose.marketing]
        skipped: dict[str, list[str]] = defaultdict(list)
        for channel, consent_channel in CONSENT_CHANNEL.items():
            of_channel = [r for r in marketing if r.channel is channel]
            if not of_channel:
                continue
            allowed = consenting(session, tenant_id,
                                 [r.customer_id for r in of_channel if r.customer_id],
                                 consent_channel)
            for r in of_channel:
                if r.customer_id not in allowed:
                    skipped["no_consent"].append(r.id)
        for r in marketing:
            if r.channel is OutboxChannel.webhook:
                skipped["no_consent"].append(r.id)  # webhooks are never marketing
        if rules.weekly_cap > 0:
            refused = set(skipped["no_consent"])
            customers = sorted({r.customer_id for r in marketing
                                if r.customer_id and r.id not in refused})
            counts: dict[str, int] = defaultdict(int)
            week_ago = now - timedelta(days=7)
            for chunk in _chunks(customers):
                for customer_id, count in session.execute(
                        select(OutboxMessage.customer_id, func.count())
                        .where(OutboxMessage.tenant_id == tenant_id,
                               OutboxMessage.customer_id.in_(chunk),
                               OutboxMessage.purpose == Purpose.marketing,
                               OutboxMessage.status == OutboxStatus.sent,
                               OutboxMessage.sent_at >= week_ago)
                        .group_by(OutboxMessage.customer_id)):
                    counts[str(customer_id)] = int(count)
            for r in marketing:
                if r.id in refused or r.customer_id is None:
                    continue
                if counts[r.customer_id] >= rules.weekly_cap:
                    skipped["frequency_cap"].append(r.id)
                else:
                    counts[r.customer_id] += 1
        gone: set[str] = set()
        for reason, ids in skipped.items():
            self._set(session, tenant_id, ids, lease_id, status=OutboxStatus.skipped,
                      reason=reason, lease_id=None, lease_until=None)
            report.skipped += len(ids)
            gone.update(ids)
        return [r for r in rows if r.id not in gone]

    def _units(self, session: Session, tenant_id: str, rows: list[Row],
               lease_id: str) -> list[Unit]:
        units: list[Unit] = []
        line_batches: dict[str, list[Row]] = defaultdict(list)
        line_groups: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            if row.channel is OutboxChannel.line:
                if row.batch_id:
                    line_batches[row.batch_id].append(row)
                else:
                    line_groups[row.group_key].append(row)
            else:
                units.append(Unit(tenant_id, row.channel, row.id, lease_id, [row]))
        for group in line_groups.values():
            if "reply_token" in group[0].payload:
                chunks = [[row] for row in group]
            else:
                chunks = [group[i:i + MAX_MULTICAST] for i in range(0, len(group),
                                                                     MAX_MULTICAST)]
            for chunk in chunks:
                batch_id = new_id()
                self._set(session, tenant_id, [r.id for r in chunk], lease_id,
                          batch_id=batch_id)
                for row in chunk:
                    row.batch_id = batch_id
                line_batches[batch_id] = chunk
        for batch_id, chunk in line_batches.items():
            units.append(Unit(tenant_id, OutboxChannel.line, batch_id, lease_id, chunk))
        self._attach_connections(session, tenant_id, units)
        return units

    def _attach_connections(self, session: Session, tenant_id: str, units: list[Unit]) -> None:
        """Read what the senders need (decrypted credentials, endpoints) while in the
        transaction; senders then run without the database."""
        needed = {u.channel for u in units}
        configs: dict[OutboxChannel, Any] = {}
        for channel in needed - {OutboxChannel.webhook}:
            row = session.get(ChannelConfig, (tenant_id, channel))
            try:
                loaded = channels.load_channel(session, tenant_id, channel)
            except (ChannelNotConfigured, CredentialsUnreadable) as exc:
                configs[channel] = str(exc)
                continue
            stamp = row.updated_at.isoformat() if row is not None else ""
            configs[channel] = (loaded, stamp)
        endpoints: dict[str, WebhookEndpoint] = {}
        if OutboxChannel.webhook in needed:
            ids = [u.rows[0].recipient for u in units if u.channel is OutboxChannel.webhook]
            endpoints = {e.id: e for e in session.scalars(select(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id.in_(ids)))}
        for unit in units:
            if unit.channel is OutboxChannel.webhook:
                endpoint = endpoints.get(unit.rows[0].recipient)
                if endpoint is None or not endpoint.active:
                    unit.extra["error"] = "webhook endpoint deleted or switched off"
                    unit.extra["final"] = True
                else:
                    try:
                        unit.extra["url"] = endpoint.url
                        unit.extra["secret"] = crypto.decrypt(endpoint.secret)["secret"]
                    except CredentialsUnreadable as exc:
                        unit.extra["error"] = str(exc)
                continue
            config = configs[unit.channel]
            if isinstance(config, str):
                unit.extra["error"] = config
            else:
                unit.extra["channel"], unit.extra["stamp"] = config
            if unit.channel is OutboxChannel.email:
                unit.extra["headers"] = {
                    r.id: list_unsubscribe_headers(tenant_id, r.customer_id)
                    for r in unit.rows if r.purpose is Purpose.marketing and r.customer_id}

    # --- 2. send ------------------------------------------------------------------------

    def _sender(self, unit: Unit) -> Any:
        key = (unit.tenant_id, unit.channel, unit.extra.get("stamp", ""))
        with self._senders_lock:
            sender = self._senders.get(key)
            if sender is None:
                loaded: channels.Channel = unit.extra["channel"]
                if unit.channel is OutboxChannel.line:
                    sender = LineSender(loaded.secrets["channel_access_token"],
                                        self.config.line_base_url)
                elif unit.channel is OutboxChannel.email:
                    s = loaded.settings
                    sender = EmailSender(SmtpConfig(
                        host=s["host"], port=int(s["port"]), from_address=s["from_address"],
                        username=s.get("username") or "",
                        password=loaded.secrets.get("password") or "",
                        security=s.get("security", "starttls")))
                else:
                    sender = SmsSender(loaded.settings["url"], loaded.secrets["token"])
                self._senders[key] = sender
            return sender

    def _webhook_sender(self) -> WebhookSender:
        key = ("", OutboxChannel.webhook, "")
        with self._senders_lock:
            sender = self._senders.get(key)
            if sender is None:
                sender = self._senders[key] = WebhookSender()
            return sender

    def _wait_for_rate(self, unit: Unit) -> None:
        rate = self.config.rates.get(unit.channel.value, 0)
        if rate <= 0:
            return
        key = f"msg:{unit.tenant_id}:{unit.channel.value}"
        while True:
            decision = self.limiter.hit(key, limit=rate, window_seconds=1)
            if decision.allowed:
                return
            time.sleep(min(1.0, max(0.01, 1.0 - (time.time() % 1.0))))

    def _send(self, unit: Unit) -> Outcome:
        if "error" in unit.extra:
            return Outcome("dead" if unit.extra.get("final") else "retry", unit.extra["error"])
        self._wait_for_rate(unit)
        row = unit.rows[0]
        try:
            if unit.channel is OutboxChannel.webhook:
                return self._webhook_sender().send(row.id, unit.extra["url"],
                                                   unit.extra["secret"], row.payload)
            sender = self._sender(unit)
            if unit.channel is OutboxChannel.line:
                recipients = [Recipient(r.id, r.recipient, r.customer_id, r.attempts)
                              for r in unit.rows]
                return sender.send(unit.unit_id, recipients, row.payload)  # type: ignore[no-any-return]
            if unit.channel is OutboxChannel.email:
                headers = unit.extra.get("headers", {}).get(row.id, {})
                payload = row.payload
                if row.purpose is Purpose.marketing and payload.get("html"):
                    payload = {**payload, "html": tracking.instrument(
                        str(payload["html"]), row.tenant_id, row.id)}
                return sender.send(row.id, row.recipient, payload, headers)  # type: ignore[no-any-return]
            return sender.send(row.id, row.recipient, row.payload)  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - a sender bug must not lose the lease's rows
            log.exception("sending %s %s failed", unit.channel.value, unit.unit_id)
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])

    # --- 3. record ----------------------------------------------------------------------

    def _record(self, units: list[Unit], outcomes: list[Outcome], report: Report) -> None:
        now = self.clock()
        config = self.config
        with self.database.unit_of_work() as session:
            for unit, outcome in zip(units, outcomes, strict=True):
                ids = [r.id for r in unit.rows]
                if outcome.kind == "sent":
                    self._set(session, unit.tenant_id, ids, unit.lease_id,
                              status=OutboxStatus.sent, sent_at=now, lease_id=None,
                              lease_until=None, last_error=None)
                    report.sent += len(ids)
                    continue
                attempts = max(r.attempts for r in unit.rows)
                if outcome.kind == "dead" or attempts >= config.max_attempts:
                    self._set(session, unit.tenant_id, ids, unit.lease_id,
                              status=OutboxStatus.dead, lease_id=None, lease_until=None,
                              last_error=outcome.error, reason="failed")
                    report.dead += len(ids)
                    log.warning("%s %s is a dead letter after %d tries: %s",
                                unit.channel.value, unit.unit_id, attempts, outcome.error)
                    if unit.channel is not OutboxChannel.webhook:  # never about itself
                        webhooks.emit(session, system_actor(unit.tenant_id, "message worker"),
                                      "message.dead", unit.unit_id, {
                                          "channel": unit.channel.value, "message_ids": ids,
                                          "error": outcome.error})
                    continue
                wait = config.backoff(attempts, outcome.retry_after)
                self._set(session, unit.tenant_id, ids, unit.lease_id,
                          status=OutboxStatus.pending,
                          next_attempt_at=now + timedelta(seconds=wait), lease_id=None,
                          lease_until=None, last_error=outcome.error)
                report.retried += len(ids)
