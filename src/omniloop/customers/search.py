"""Finding a customer the way staff type it: a phone in any format, an e-mail, a LINE id,
a card or shop id, or part of a name."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from omniloop.core.db import Session
from omniloop.customers.errors import InvalidIdentity
from omniloop.customers.identities import normalize
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.profiles import survivor_ids
from omniloop.tenancy.access import Actor, Permission

_EXACT_KINDS = (IdentityKind.pos_card, IdentityKind.ecommerce, IdentityKind.device,
                IdentityKind.line)


def search_customers(session: Session, actor: Actor, query: str,
                     limit: int = 50) -> list[Customer]:
    """Live profiles matching `query`, best matches first; the newest when `query` is empty."""
    actor.require(Permission.customers_read)
    text = query.strip()
    base = select(Customer).where(Customer.tenant_id == actor.tenant_id,
                                  Customer.merged_into_id.is_(None))
    if not text:
        return list(session.scalars(base.order_by(Customer.created_at.desc()).limit(limit)))
    candidates: list[tuple[IdentityKind, str]] = [(kind, text) for kind in _EXACT_KINDS]
    for kind in (IdentityKind.phone, IdentityKind.email):
        try:
            candidates.append((kind, normalize(kind, text)))
        except InvalidIdentity:
            pass
    matched = session.scalars(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == actor.tenant_id,
        or_(*[(CustomerIdentity.kind == kind) & (CustomerIdentity.value == value)
              for kind, value in candidates]))).all()
    by_identity = list(dict.fromkeys(survivor_ids(session, actor.tenant_id, matched).values()))
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    by_name = session.scalars(base.where(func.lower(Customer.name).like(
        func.lower(pattern), escape="\\")).order_by(Customer.name).limit(limit)).all()
    found = {c.id: c for c in session.scalars(base.where(Customer.id.in_(by_identity)))}
    ordered = [found[i] for i in by_identity if i in found]
    ordered += [c for c in by_name if c.id not in found]
    return ordered[:limit]
