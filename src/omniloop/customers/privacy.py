"""One customer's personal data (Taiwan PDPA, GDPR): export it, and erase it.

A person is the surviving profile and every profile merged into it; both operations cover
all of them.

*Export* gathers everything omniloop holds about the person: profile traits, identities,
consents, merge history, events (oldest first), and what other modules hold, through
`register_export_section`.

*Erase* removes what identifies the person and keeps what the brand's numbers are made of:
identities and consents are deleted, traits cleared (the home store is a fact about a store,
not about the person, and stays), event properties cut down to non-personal keys; the event
rows, their type, time, store, campaign and channel stay, and so do orders, still linked to
the (now anonymous) profile id, so sales, redemptions and funnels add up as before. Other
modules remove their own personal values through `register_erase_step`. The audit entry
keeps the reason and the counts, never the erased values. Only owners (and `admin` API keys)
may erase.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import phonenumbers
from sqlalchemy import delete, or_, select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.customers.errors import CustomerErased, ErasureReasonInvalid, InvalidIdentity
from omniloop.customers.identify import TRAIT_FIELDS
from omniloop.customers.identities import normalize_phone
from omniloop.customers.models import (
    Customer,
    CustomerConsent,
    CustomerIdentity,
    CustomerMerge,
    Event,
    IdentityKind,
)
from omniloop.customers.profiles import get_customer, profile_ids
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant

EXPORT_FORMAT = "omniloop.customer-export"
EXPORT_VERSION = 1
REASON_MAX = 500
ERASED = "[erased]"

# Event property keys that describe the business, not the person: kept on erasure so that
# revenue, basket and campaign figures stay right. Everything else is dropped, and so is a
# kept value that contains one of the person's identifiers or names.
KEPT_EVENT_PROPERTIES = frozenset({
    "order_id", "refund_id", "external_id", "total_minor", "subtotal_minor", "discount_minor",
    "amount_minor", "refund_minor", "currency", "items", "lines", "quantity", "product_id",
    "sku", "coupon_id", "campaign_id", "store_id", "touchpoint_id", "link_id", "message_id",
    "channel", "status", "previous", "points", "rating", "tier",
})
# Keys kept inside the lists under `items` and `lines` (order and refund lines).
LIST_PROPERTIES = frozenset({"items", "lines"})
KEPT_ITEM_PROPERTIES = frozenset({
    "line_id", "position", "product_id", "sku", "name", "category", "quantity",
    "unit_price_minor", "price_minor", "discount_minor", "total_minor", "net_minor",
    "amount_minor", "currency",
})

# A module's part of the export: (session, actor, survivor, ids of all the person's
# profiles) -> a JSON-able value, usually a list of records.
ExportSection = Callable[[Session, Actor, Customer, set[str]], Any]
# A module's part of the erasure: removes or anonymises its personal values for those
# profiles in the caller's transaction, and returns how many records it changed.
EraseStep = Callable[[Session, Actor, Customer, set[str]], int]

BUILT_IN_SECTIONS = frozenset({"format", "version", "exported_at", "brand", "customer_id",
                               "profiles", "identities", "consents", "merges", "events"})
# Extension points. Modules that hold personal data register here when they are imported
# (orders: the person's orders; loyalty: the points ledger; ...). This module never imports
# them, so it works whether or not they are installed.
EXPORT_SECTIONS: dict[str, ExportSection] = {}
ERASE_STEPS: dict[str, EraseStep] = {}


def register_export_section(name: str, section: ExportSection) -> None:
    """Add `name` to every export, filled by `section`. Registering a name again replaces it."""
    if name in BUILT_IN_SECTIONS:
        raise ValueError(f"{name!r} is a built-in section of the export")
    EXPORT_SECTIONS[name] = section


def register_erase_step(name: str, step: EraseStep) -> None:
    """Run `step` in every erasure; its count is reported in the audit entry under `name`."""
    ERASE_STEPS[name] = step


# --- export ------------------------------------------------------------------------------


def export_customer(session: Session, actor: Actor, customer_id: str) -> dict[str, Any]:
    """Everything held about the person behind `customer_id`, as JSON-able values."""
    actor.require(Permission.customers_read)
    customer = get_customer(session, actor, customer_id)
    tenant_id = actor.tenant_id
    ids = profile_ids(session, tenant_id, customer.id)
    profiles = session.scalars(select(Customer).where(
        Customer.tenant_id == tenant_id, Customer.id.in_(ids))
        .order_by(Customer.created_at, Customer.id))
    identities = session.scalars(select(CustomerIdentity).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.customer_id.in_(ids))
        .order_by(CustomerIdentity.created_at, CustomerIdentity.id))
    consents = session.scalars(select(CustomerConsent).where(
        CustomerConsent.tenant_id == tenant_id, CustomerConsent.customer_id.in_(ids))
        .order_by(CustomerConsent.channel, CustomerConsent.customer_id))
    merges = session.scalars(select(CustomerMerge).where(
        CustomerMerge.tenant_id == tenant_id,
        or_(CustomerMerge.survivor_id.in_(ids), CustomerMerge.merged_id.in_(ids)))
        .order_by(CustomerMerge.at, CustomerMerge.id))
    events = session.scalars(select(Event).where(
        Event.tenant_id == tenant_id, Event.customer_id.in_(ids))
        .order_by(Event.occurred_at, Event.id))
    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": utcnow(),
        "brand": get_tenant(session, tenant_id).name,
        "customer_id": customer.id,
        "profiles": [_record(p, ("id", *TRAIT_FIELDS, "merged_into_id", "created_at",
                                 "updated_at", "erased_at")) for p in profiles],
        "identities": [_record(i, ("id", "customer_id", "kind", "value", "source",
                                   "created_at")) for i in identities],
        "consents": [_record(c, ("customer_id", "channel", "status", "source", "changed_at"))
                     for c in consents],
        # Who on the staff merged is the staff's data, not the customer's: left out.
        "merges": [_record(m, ("id", "survivor_id", "merged_id", "reason", "at", "undone_at"))
                   for m in merges],
        "events": [_record(e, ("id", "client_event_id", "customer_id", "type", "channel",
                               "source", "store_id", "campaign_id", "properties",
                               "occurred_at", "received_at")) for e in events],
    }
    for name, section in sorted(EXPORT_SECTIONS.items()):
        data[name] = section(session, actor, customer, set(ids))
    return {key: _plain(value) for key, value in data.items()}


def _record(row: object, fields: Iterable[str]) -> dict[str, Any]:
    return {name: _plain(getattr(row, name)) for name in fields}


def _plain(value: Any) -> Any:
    """JSON-able: times in UTC ISO 8601, dates ISO, enums by value."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


# --- erasure -----------------------------------------------------------------------------


@dataclass
class Erasure:
    customer: Customer
    profile_ids: list[str]
    counts: dict[str, int]


_PHONE_LIKE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


class _Redactor:
    """Finds the person's identifiers and names inside free text, however a phone is written."""

    def __init__(self, literals: Iterable[str], phones: Iterable[str]) -> None:
        self.phones = set(phones)
        words = sorted({w for w in literals if w}, key=len, reverse=True)
        # Whole values only ("Li" is a name, not the middle of "client"), case-insensitive.
        self.pattern = (re.compile(r"(?<![A-Za-z0-9])(?:"
                                   + "|".join(re.escape(w) for w in words)
                                   + r")(?![A-Za-z0-9])", re.IGNORECASE) if words else None)

    def redact(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(ERASED, text)
        if self.phones:
            text = _PHONE_LIKE.sub(
                lambda m: ERASED if _as_phone(m.group()) in self.phones else m.group(), text)
        return text

    def touches(self, text: str) -> bool:
        return self.redact(text) != text


def _as_phone(text: str) -> str | None:
    try:
        return normalize_phone(text)
    except InvalidIdentity:
        return None


def _redactor_for(identities: list[CustomerIdentity], names: Iterable[str | None]) -> _Redactor:
    literals: set[str] = {n.strip() for n in names if n and len(n.strip()) >= 2}
    phones: set[str] = set()
    for identity in identities:
        if len(identity.value) >= 4:
            literals.add(identity.value)
        if identity.kind is IdentityKind.phone:
            phones.add(identity.value)
            literals.add(identity.value.lstrip("+"))
            try:
                number = phonenumbers.parse(identity.value)
            except phonenumbers.NumberParseException:
                continue
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            literals.add(re.sub(r"\D", "", national))
    return _Redactor(literals, phones)


def _clean(value: Any, redactor: _Redactor) -> bool:
    """A scalar that says nothing about who the person is."""
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and not redactor.touches(value)


def scrub_properties(properties: dict[str, Any], redactor: _Redactor) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in properties.items():
        if key not in KEPT_EVENT_PROPERTIES:
            continue
        if key in LIST_PROPERTIES and isinstance(value, list):
            kept[key] = [{k: v for k, v in item.items()
                          if k in KEPT_ITEM_PROPERTIES and _clean(v, redactor)}
                         for item in value if isinstance(item, dict)]
        elif _clean(value, redactor):
            kept[key] = value
    return kept


def _scrub_traits(traits: Any) -> Any:
    if not isinstance(traits, dict):
        return traits
    return {name: value if name == "home_store_id" else ([] if name == "tags" else None)
            for name, value in traits.items()}


def erase_customer(session: Session, actor: Actor, customer_id: str, reason: str) -> Erasure:
    """Erase the personal data of the person behind `customer_id`; see the module docstring.

    Needs `customers.erase` (owners, `admin` keys). Erasing twice answers `CustomerErased`;
    two erasures racing each other are decided by one conditional update, so exactly one
    does the work and writes the audit entry.
    """
    actor.require(Permission.customers_erase)
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX:
        raise ErasureReasonInvalid(field="reason", limit=REASON_MAX)
    customer = get_customer(session, actor, customer_id)
    tenant_id = actor.tenant_id
    now = utcnow()
    claimed = session.execute(update(Customer).where(
        Customer.tenant_id == tenant_id, Customer.id == customer.id,
        Customer.erased_at.is_(None)).values(erased_at=now)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise CustomerErased()
    ids = profile_ids(session, tenant_id, customer.id)
    profiles = list(session.scalars(select(Customer).where(
        Customer.tenant_id == tenant_id, Customer.id.in_(ids))))
    merges = list(session.scalars(select(CustomerMerge).where(
        CustomerMerge.tenant_id == tenant_id,
        or_(CustomerMerge.survivor_id.in_(ids), CustomerMerge.merged_id.in_(ids)))))
    identities = list(session.scalars(select(CustomerIdentity).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.customer_id.in_(ids))))
    names = [p.name for p in profiles]
    for merge in merges:  # names the profiles had before a later change are personal too
        for key in ("survivor_before", "survivor_after", "merged_before"):
            traits = merge.snapshot.get(key)
            if isinstance(traits, dict):
                names.append(traits.get("name"))
    redactor = _redactor_for(identities, names)

    counts: dict[str, int] = {"profiles": len(profiles)}
    counts["identities"] = _deleted(session.execute(delete(CustomerIdentity).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.customer_id.in_(ids))
        .execution_options(synchronize_session=False)))
    counts["consents"] = _deleted(session.execute(delete(CustomerConsent).where(
        CustomerConsent.tenant_id == tenant_id, CustomerConsent.customer_id.in_(ids))
        .execution_options(synchronize_session=False)))
    for profile in profiles:
        profile.name = profile.birthday = profile.gender = profile.language = None
        profile.tags = []
        profile.erased_at = now
    counts["merges_scrubbed"] = 0
    for merge in merges:
        merge.snapshot = {key: _scrub_traits(value) for key, value in merge.snapshot.items()}
        merge.reason = redactor.redact(merge.reason)[:255]
        counts["merges_scrubbed"] += 1
    counts["events_kept"], counts["events_scrubbed"] = _scrub_events(
        session, tenant_id, ids, redactor)
    for name, step in sorted(ERASE_STEPS.items()):
        counts[name] = step(session, actor, customer, set(ids))
    session.flush()
    audit.record(session, actor, "customer.erase", "customer", customer.id, {
        "reason": redactor.redact(reason), "profile_ids": sorted(ids), "counts": counts})
    return Erasure(customer=customer, profile_ids=sorted(ids), counts=counts)


def _deleted(result: Any) -> int:
    return int(result.rowcount)


def _scrub_events(session: Session, tenant_id: str, ids: set[str],
                  redactor: _Redactor) -> tuple[int, int]:
    """Cut every event of these profiles down to non-personal values; (kept, changed)."""
    kept = changed = 0
    for event in session.scalars(select(Event).where(
            Event.tenant_id == tenant_id, Event.customer_id.in_(ids))):
        kept += 1
        properties = scrub_properties(event.properties or {}, redactor)
        touched = properties != (event.properties or {})
        if touched:
            event.properties = properties
        if redactor.touches(event.client_event_id):
            # The idempotency key itself named the person (e.g. `line:<user id>:follow`).
            event.client_event_id = f"erased:{event.id}"
            touched = True
        if event.source and redactor.touches(event.source):
            event.source = ""
            touched = True
        changed += touched
    return kept, changed
