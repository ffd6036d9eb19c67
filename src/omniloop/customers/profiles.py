"""Reading profiles: lookups, and following merges to the surviving profile."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.errors import CustomerNotFound
from omniloop.customers.models import Customer, CustomerIdentity
from omniloop.tenancy.access import Actor, Permission


def survivor_ids(session: Session, tenant_id: str, ids: Iterable[str]) -> dict[str, str]:
    """Each id mapped to the profile it now lives in (itself unless merged away)."""
    result = {i: i for i in ids}
    pending = set(result)
    while pending:
        rows = session.execute(select(Customer.id, Customer.merged_into_id).where(
            Customer.tenant_id == tenant_id, Customer.id.in_(pending))).all()
        moved = {cid: target for cid, target in rows if target}
        if not moved:
            break
        for original, current in result.items():
            if current in moved:
                result[original] = moved[current]
        pending = set(moved.values())
    return result


def profile_ids(session: Session, tenant_id: str, survivor_id: str) -> set[str]:
    """The survivor and every profile merged into it, directly or through others."""
    found = {survivor_id}
    frontier = {survivor_id}
    while frontier:
        frontier = set(session.scalars(select(Customer.id).where(
            Customer.tenant_id == tenant_id, Customer.merged_into_id.in_(frontier)))) - found
        found |= frontier
    return found


def get_customer(session: Session, actor: Actor, customer_id: str) -> Customer:
    """The live profile for an id; a merged-away id answers with its survivor."""
    actor.require(Permission.customers_read)
    survivor = survivor_ids(session, actor.tenant_id, [customer_id])[customer_id]
    customer = session.get(Customer, (actor.tenant_id, survivor))
    if customer is None:
        raise CustomerNotFound()
    return customer


def identities_of(session: Session, tenant_id: str, customer_id: str) -> list[CustomerIdentity]:
    # Sorted here, not in SQL: an ORDER BY (kind, created_at) leads SQLite to walk the unique
    # (tenant, kind, value) index over every identity of the brand instead of using the
    # (tenant, customer) index; a person has a handful of identities.
    found = session.scalars(select(CustomerIdentity).where(
        CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.customer_id == customer_id))
    return sorted(found, key=lambda i: (i.kind.value, i.created_at, i.id))
