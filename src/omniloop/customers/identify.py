"""Identify: find or create the customer behind a set of identities, merging when they
turn out to be one person; and undoing such a merge.

Concurrency: two calls racing to create the same new identity both try to insert it; the
unique constraint on (tenant, kind, value) lets one win, and the loser's savepoint is rolled
back and the lookup repeated, so it attaches to the winner's profile. No database-specific
locks are needed. (On SQLite, with one writer at a time, the race cannot happen: no
savepoint there.)

The usual calls run a few prepared Core statements and answer with the profile's values
(`identify_profile`); merges and undos use the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import Conflict
from omniloop.core.ids import new_id
from omniloop.core.prepared import Prepared, plain_savepoint
from omniloop.core.signals import Signal
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
# A profile's values as identify answers them (CustomerOut without the identities).
PROFILE_FIELDS = ("id", *TRAIT_FIELDS, "created_at", "updated_at", "erased_at")
Pair = tuple[IdentityKind, str]
_RACE_RETRIES = 5
_TRAIT_SET = frozenset(TRAIT_FIELDS)

_CUSTOMERS = cast(Table, Customer.__table__)
_IDENTITIES = cast(Table, CustomerIdentity.__table__)

# What other modules keep per profile (points) follows a merge and its undo through these.
profiles_merged: Signal[[Session, Actor, CustomerMerge]] = Signal("profiles_merged")
merge_undone: Signal[[Session, Actor, CustomerMerge]] = Signal("merge_undone")


@dataclass
class IdentifyResult:
    customer: Customer
    created: bool
    merged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Identified:
    """What `identify_profile` did.

    Either `profile` holds the profile's PROFILE_FIELDS as identify left them, as the
    database returns them or as they were just written; or, when the call merged profiles (or
    the session already held the profile as an ORM object), `customer` is that object.
    """

    customer_id: str
    created: bool
    merged: list[str]
    profile: dict[str, Any] | None = None
    customer: Customer | None = None


@lru_cache(maxsize=32_768)
def _normalize_phone(value: str) -> str:
    return normalize(IdentityKind.phone, value)


def normalized(kind: IdentityKind, value: str) -> str:
    """`identities.normalize`, with phones remembered: parsing one costs tens of microseconds
    and the same numbers come back again and again. Only phones: caching every one-off
    device id would push them out."""
    if kind is IdentityKind.phone:
        return _normalize_phone(value)
    return normalize(kind, value)


def normalize_identities(identities: Sequence[IdentityIn]) -> list[Pair]:
    """Canonical (kind, value) pairs in the order given, without repeats; errors name the field."""
    pairs: list[Pair] = []
    for index, identity in enumerate(identities):
        try:
            pair = (identity.kind, normalized(identity.kind, identity.value))
        except InvalidIdentity as exc:
            exc.field = f"identities.{index}.value"
            raise
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def identify(session: Session, actor: Actor, identities: Sequence[IdentityIn],
             traits: Traits | None = None, *, source: str = "api") -> IdentifyResult:
    done = identify_profile(session, actor, identities, traits, source=source)
    customer = done.customer or session.get_one(Customer, (actor.tenant_id, done.customer_id))
    return IdentifyResult(customer=customer, created=done.created, merged=done.merged)


def identify_profile(session: Session, actor: Actor, identities: Sequence[IdentityIn],
                     traits: Traits | None = None, *, source: str = "api") -> Identified:
    """`identify`, answering with the profile's values rather than an ORM object.

    The usual calls (identities that are new, or that all belong to one profile) take a few
    prepared Core statements; a call that merges profiles goes the ORM way below.
    """
    actor.require(Permission.customers_write)
    pairs = normalize_identities(identities)
    if not pairs:
        raise NoIdentity()
    if traits is not None and traits.home_store_id is not None:
        get_store(session, actor, traits.home_store_id)
    session.flush()  # the Core statements below must see the caller's pending ORM changes
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # No race to settle on SQLite: it has one writer at a time, and a transaction whose
        # snapshot is stale cannot write (SQLITE_BUSY_SNAPSHOT), so no other call can create
        # these identities between the look-up and the INSERT. No savepoint, no retry.
        return _identify_pairs(session, actor, pairs, traits, source, isolated=False)
    for _ in range(_RACE_RETRIES):
        try:
            return _identify_pairs(session, actor, pairs, traits, source, isolated=True)
        except IntegrityError:
            continue  # another request created one of these identities meanwhile: look again
    raise Conflict()


def _identify_pairs(session: Session, actor: Actor, pairs: list[Pair], traits: Traits | None,
                    source: str, *, isolated: bool) -> Identified:
    """One attempt; `isolated`: in savepoints, so that a lost race leaves nothing behind."""
    with plain_savepoint(session, "omniloop_identify") if isolated else nullcontext():
        done = _identify_simple(session, actor.tenant_id, pairs, traits, source)
    if done is not None:
        return done
    # A merge: the ORM way, in a savepoint the session knows of (a failed flush must roll back
    # the session's objects too). _identify_simple wrote nothing.
    with session.begin_nested() if isolated else nullcontext():
        result = _identify_once(session, actor, pairs, traits, source)
    return Identified(result.customer.id, result.created, result.merged,
                      customer=result.customer)


# --- The usual calls, in Core ----------------------------------------------------------------
#
# Building an ORM query costs more than SQLite takes to answer it, and identify is called
# for every customer at every counter: these statements are prepared once (core.prepared)
# and run on the session's connection.

_PROFILE_COLUMNS = tuple(_CUSTOMERS.c[name] for name in PROFILE_FIELDS)

# The profiles these identities belong to, with the profiles' values: one statement for one
# value (the usual call, spared the rendering of an expanding IN), one for several.
_OWNERS_OF = (
    select(_IDENTITIES.c.value, _CUSTOMERS.c.merged_into_id, *_PROFILE_COLUMNS)
    .join_from(_IDENTITIES, _CUSTOMERS, (_CUSTOMERS.c.tenant_id == _IDENTITIES.c.tenant_id)
               & (_CUSTOMERS.c.id == _IDENTITIES.c.customer_id))
    .where(_IDENTITIES.c.tenant_id == bindparam("tenant_id"),
           _IDENTITIES.c.kind == bindparam("kind")))
_OWNER = Prepared(_OWNERS_OF.where(_IDENTITIES.c.value == bindparam("value")))
_OWNERS = _OWNERS_OF.where(_IDENTITIES.c.value.in_(bindparam("values", expanding=True)))
_INSERT_CUSTOMER = Prepared(insert(_CUSTOMERS), columns=("tenant_id", "merged_into_id",
                                                         *PROFILE_FIELDS))
_INSERT_IDENTITY = Prepared(insert(_IDENTITIES), columns=(
    "tenant_id", "id", "customer_id", "kind", "value", "source", "created_at"))
_CUSTOMER_ROW = (_CUSTOMERS.c.tenant_id == bindparam("key_tenant_id")) & (
    _CUSTOMERS.c.id == bindparam("key_id"))


def _identify_simple(session: Session, tenant_id: str, pairs: list[Pair],
                     traits: Traits | None, source: str) -> Identified | None:
    """Identify when it needs no merge: None when it does (or the profile is loaded as an ORM
    object in this session, which a Core UPDATE would leave stale)."""
    by_kind: dict[IdentityKind, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    existing: set[Pair] = set()
    # Per profile: (value, merged_into_id, *PROFILE_FIELDS)
    rows: dict[str, tuple[Any, ...]] = {}
    for kind, values in by_kind.items():
        rows_of_kind = (
            _OWNER.rows(session, {"tenant_id": tenant_id, "kind": kind, "value": values[0]})
            if len(values) == 1
            else [tuple(row) for row in session.connection().execute(
                _OWNERS, {"tenant_id": tenant_id, "kind": kind, "values": values})])
        for row in rows_of_kind:
            existing.add((kind, row[0]))
            rows[row[2]] = row
    now = utcnow()
    created = not rows
    if created:
        customer_id = new_id()
        profile: dict[str, Any] = dict.fromkeys(PROFILE_FIELDS)
        profile.update(id=customer_id, tags=[], created_at=now, updated_at=now)
        if traits is not None:
            profile.update(_trait_changes(profile, traits))
        _INSERT_CUSTOMER.run(session, {"tenant_id": tenant_id, "merged_into_id": None,
                                       **profile})
    else:
        if len(rows) > 1:
            return None  # a merge
        (row,) = rows.values()
        customer_id = row[2]
        if row[1] is not None or (
                session.identity_map.get(session.identity_key(Customer, (tenant_id, customer_id)))
                is not None):
            return None
        profile = dict(zip(PROFILE_FIELDS, row[2:], strict=True))
    # Inserted in key order, as batch ingestion does, so two writers adding overlapping new
    # identities take the index locks in the same order and cannot deadlock on PostgreSQL.
    new_pairs = sorted(pair for pair in pairs if pair not in existing)
    if new_pairs:
        _INSERT_IDENTITY.run_many(session, [
            {"tenant_id": tenant_id, "id": new_id(), "customer_id": customer_id, "kind": kind,
             "value": value, "source": source, "created_at": now}
            for kind, value in new_pairs])
    if traits is not None and not created:
        changes = _trait_changes(profile, traits)
        if changes:
            changes["updated_at"] = now
            session.connection().execute(
                update(_CUSTOMERS).where(_CUSTOMER_ROW).values(**changes),
                {"key_tenant_id": tenant_id, "key_id": customer_id})
            profile.update(changes)
    return Identified(customer_id, created, [], profile=profile)


def _trait_changes(profile: dict[str, Any], traits: Traits) -> dict[str, Any]:
    """The values `apply_traits` would change on this profile."""
    changes: dict[str, Any] = {}
    for name in traits.model_fields_set & _TRAIT_SET:
        value = getattr(traits, name)
        if name == "tags":
            value = sorted(set(profile["tags"] or []) | set(value or []))
        elif value is None:
            continue
        if value != profile[name]:
            changes[name] = value
    return changes


# --- Merges, in the ORM ------------------------------------------------------------------------

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
    profiles_merged.send(session, actor, record)
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
    merge_undone.send(session, actor, record)
    return record


def list_merges(session: Session, actor: Actor, customer_ids: set[str]) -> list[CustomerMerge]:
    actor.require(Permission.customers_read)
    return list(session.scalars(select(CustomerMerge).where(
        CustomerMerge.tenant_id == actor.tenant_id,
        CustomerMerge.survivor_id.in_(customer_ids) | CustomerMerge.merged_id.in_(customer_ids))
        .order_by(CustomerMerge.at.desc())))
