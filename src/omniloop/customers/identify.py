"""Identify: find or create the customer behind a set of identities, merging when they
turn out to be one person; and undoing such a merge.

Concurrency: two calls racing to create the same new identity both try to insert it; the
unique constraint on (tenant, kind, value) lets one win, and the loser's savepoint is rolled
back and the lookup repeated, so it attaches to the winner's profile. No database-specific
locks are needed, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import Conflict
from omniloop.customers.errors import (
    CustomerErased,
    InvalidIdentity,
    MergeAlreadyUndone,
    MergeHasLaterMerges,
    MergeNotFound,
    NoIdentity,
)
from omniloop.customers.identities import normalize
from omniloop.customers.models import Customer, CustomerIdentity, CustomerMerge, IdentityKind
from omniloop.customers.profiles import survivor_ids
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import get_store

TRAIT_FIELDS = ("name", "birthday", "gender", "home_store_id", "language", "tags")
Pair = tuple[IdentityKind, str]
_RACE_RETRIES = 5


@dataclass
class IdentifyResult:
    customer: Customer
    created: bool
    merged: list[str] = field(default_factory=list)


def normalize_identities(identities: list[IdentityIn]) -> list[Pair]:
    """Canonical (kind, value) pairs in the order given, without repeats; errors name the field."""
    pairs: list[Pair] = []
    for index, identity in enumerate(identities):
        try:
            pair = (identity.kind, normalize(identity.kind, identity.value))
        except InvalidIdentity as exc:
            exc.field = f"identities.{index}.value"
            raise
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def identify(session: Session, actor: Actor, identities: list[IdentityIn],
             traits: Traits | None = None, *, source: str = "api") -> IdentifyResult:
    actor.require(Permission.customers_write)
    pairs = normalize_identities(identities)
    if not pairs:
        raise NoIdentity()
    if traits is not None and traits.home_store_id is not None:
        get_store(session, actor, traits.home_store_id)
    for _ in range(_RACE_RETRIES):
        try:
            with session.begin_nested():
                return _identify_once(session, actor, pairs, traits, source)
        except IntegrityError:
            continue  # another request created one of these identities meanwhile: look again
    raise Conflict()


def _identify_once(session: Session, actor: Actor, pairs: list[Pair], traits: Traits | None,
                   source: str) -> IdentifyResult:
    tenant_id = actor.tenant_id
    existing = _existing(session, tenant_id, pairs)
    owners = survivor_ids(session, tenant_id, set(existing.values()))
    live_ids = sorted(set(owners.values()))
    created = False
    merged: list[str] = []
    if not live_ids:
        customer = Customer(tenant_id=tenant_id, tags=[])
        session.add(customer)
        session.flush()
        created = True
    else:
        profiles = list(session.scalars(select(Customer).where(
            Customer.tenant_id == tenant_id, Customer.id.in_(live_ids))))
        profiles.sort(key=lambda c: (c.created_at, c.id))
        customer = profiles[0]
        for other in profiles[1:]:
            merge(session, actor, customer, other,
                  reason=f"identify via {source}: shared identities")
            merged.append(other.id)
    # Inserted in key order, as batch ingestion does, so two writers adding overlapping new
    # identities take the index locks in the same order and cannot deadlock on PostgreSQL.
    for kind, value in sorted(pairs):
        if (kind, value) not in existing:
            session.add(CustomerIdentity(tenant_id=tenant_id, customer_id=customer.id,
                                         kind=kind, value=value, source=source))
    if traits is not None:
        apply_traits(customer, traits)
    session.flush()
    return IdentifyResult(customer=customer, created=created, merged=merged)


def _existing(session: Session, tenant_id: str, pairs: list[Pair]) -> dict[Pair, str]:
    """Which of these identities exist already, and on which profile."""
    by_kind: dict[IdentityKind, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    found: dict[Pair, str] = {}
    for kind, values in by_kind.items():
        rows = session.execute(select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
            CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.kind == kind,
            CustomerIdentity.value.in_(values)))
        for value, customer_id in rows:
            found[(kind, value)] = customer_id
    return found


def apply_traits(customer: Customer, traits: Traits) -> None:
    """Set the traits that were sent; tags are added to the existing ones."""
    for name in traits.model_fields_set & set(TRAIT_FIELDS):
        value = getattr(traits, name)
        if name == "tags":
            customer.tags = sorted(set(customer.tags or []) | set(value or []))
        elif value is not None:
            setattr(customer, name, value)


def _traits_of(customer: Customer) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in TRAIT_FIELDS:
        value = getattr(customer, name)
        values[name] = value.isoformat() if isinstance(value, date) else (
            list(value) if isinstance(value, list) else value)
    return values


def _set_traits(customer: Customer, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "birthday" and isinstance(value, str):
            value = date.fromisoformat(value)
        setattr(customer, name, value)


def merge(session: Session, actor: Actor, survivor: Customer, merged: Customer, *,
          reason: str) -> CustomerMerge:
    """Fold `merged` into `survivor`: its identities move, its empty traits are filled, and a
    merge record keeps what an undo needs. `merged` stays as a pointer to the survivor."""
    actor.require(Permission.customers_write)
    survivor_before = _traits_of(survivor)
    merged_traits = _traits_of(merged)
    moved_ids = list(session.scalars(select(CustomerIdentity.id).where(
        CustomerIdentity.tenant_id == actor.tenant_id,
        CustomerIdentity.customer_id == merged.id)))
    session.execute(update(CustomerIdentity).where(
        CustomerIdentity.tenant_id == actor.tenant_id, CustomerIdentity.id.in_(moved_ids))
        .values(customer_id=survivor.id).execution_options(synchronize_session=False))
    for name in TRAIT_FIELDS:
        if name == "tags":
            survivor.tags = sorted(set(survivor.tags or []) | set(merged.tags or []))
        elif getattr(survivor, name) is None and getattr(merged, name) is not None:
            setattr(survivor, name, getattr(merged, name))
    merged.merged_into_id = survivor.id
    session.flush()
    record = CustomerMerge(
        tenant_id=actor.tenant_id, survivor_id=survivor.id, merged_id=merged.id,
        reason=reason, actor_label=actor.label,
        snapshot={"moved_identity_ids": moved_ids, "survivor_before": survivor_before,
                  "survivor_after": _traits_of(survivor), "merged_before": merged_traits})
    session.add(record)
    session.flush()
    audit.record(session, actor, "customer.merge", "customer", survivor.id,
                 {"merged_id": merged.id, "reason": reason, "merge_id": record.id})
    return record


def undo_merge(session: Session, actor: Actor, merge_id: str) -> CustomerMerge:
    """Restore both profiles as they were before the merge.

    Identities the merge moved go back; traits the merge filled in on the survivor go back
    to their earlier value unless they were changed again since. Events and orders never
    moved (they keep the profile they arrived on), so they follow automatically.
    """
    actor.require(Permission.customers_merge)
    record = session.get(CustomerMerge, (actor.tenant_id, merge_id))
    if record is None:
        raise MergeNotFound()
    if record.undone_at is not None:
        raise MergeAlreadyUndone()
    # Foreign keys guarantee both profiles exist; merged profiles are never deleted.
    survivor = session.get_one(Customer, (actor.tenant_id, record.survivor_id))
    merged = session.get_one(Customer, (actor.tenant_id, record.merged_id))
    if survivor.erased_at is not None or merged.erased_at is not None:
        raise CustomerErased()
    if survivor.merged_into_id is not None:
        raise MergeHasLaterMerges()
    moved_ids = record.snapshot["moved_identity_ids"]
    session.execute(update(CustomerIdentity).where(
        CustomerIdentity.tenant_id == actor.tenant_id, CustomerIdentity.id.in_(moved_ids),
        CustomerIdentity.customer_id == survivor.id)
        .values(customer_id=merged.id).execution_options(synchronize_session=False))
    before, after = record.snapshot["survivor_before"], record.snapshot["survivor_after"]
    current = _traits_of(survivor)
    _set_traits(survivor, {name: before[name] for name in TRAIT_FIELDS
                           if current[name] == after[name] and before[name] != after[name]})
    merged.merged_into_id = None
    record.undone_at = utcnow()
    record.undone_by = actor.label
    session.flush()
    session.expire_all()
    audit.record(session, actor, "customer.unmerge", "customer", record.survivor_id,
                 {"merged_id": record.merged_id, "merge_id": record.id})
    return record


def list_merges(session: Session, actor: Actor, customer_ids: set[str]) -> list[CustomerMerge]:
    actor.require(Permission.customers_read)
    return list(session.scalars(select(CustomerMerge).where(
        CustomerMerge.tenant_id == actor.tenant_id,
        CustomerMerge.survivor_id.in_(customer_ids) | CustomerMerge.merged_id.in_(customer_ids))
        .order_by(CustomerMerge.at.desc())))
