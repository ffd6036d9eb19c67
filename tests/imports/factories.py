"""Helpers for import tests: files as exports come, and what the database holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from omniloop.core.db import Session
from omniloop.customers.models import Customer, CustomerIdentity, Event
from omniloop.orders.models import Order, OrderLine
from omniloop.tenancy.models import AuditEntry
from tests.tenancy.factories import fresh

DATA = Path(__file__).parent / "data"


def csv_file(*lines: str, encoding: str = "utf-8", bom: bool = False,
             newline: str = "\r\n") -> bytes:
    """Lines joined as a spreadsheet saves them."""
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def table_counts(session: Session) -> dict[str, int]:
    """Rows in every table an import writes, as committed."""
    fresh(session)
    models: dict[str, Any] = {"customers": Customer, "identities": CustomerIdentity,
                              "orders": Order, "lines": OrderLine, "events": Event,
                              "audit": AuditEntry}
    return {name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in models.items()}


def live_customers(session: Session) -> list[Customer]:
    fresh(session)
    return list(session.scalars(select(Customer).where(Customer.merged_into_id.is_(None))
                                .order_by(Customer.created_at, Customer.id)))


def identities_by_customer(session: Session) -> dict[str, set[tuple[str, str]]]:
    fresh(session)
    found: dict[str, set[tuple[str, str]]] = {}
    for identity in session.scalars(select(CustomerIdentity)):
        found.setdefault(identity.customer_id, set()).add((identity.kind.value, identity.value))
    return found
