"""The customer 360 page shows points; the personal-data export carries the ledger."""

from __future__ import annotations

from fastapi.testclient import TestClient

from omniloop.core.db import Session
from omniloop.customers.privacy import export_customer
from omniloop.loyalty.ledger import adjust_points
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.loyalty.test_ledger import order
from tests.tenancy.factories import fresh, make_staff, make_tenant
from tests.web.admin_helpers import login


def test_the_360_page_shows_balance_and_history(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    owner = make_staff(session, tenant, Role.owner)
    placed = order(session, tenant, "S-1", 123400)  # NT$1,234 → 12 points
    customer = placed.customer_id
    assert customer is not None
    fresh(session)
    adjust_points(session, system_actor(tenant.id), customer, 5, "生日禮", key="s-adj")
    session.commit()
    login(client, owner.email)
    page = client.get(f"/admin/customers/{customer}")
    assert page.status_code == 200
    assert "點數餘額" in page.text
    assert ">17<" in page.text
    assert "生日禮" in page.text
    english = client.get(f"/admin/customers/{customer}?lang=en").text
    assert "Points balance" in english
    fresh(session)
    exported = export_customer(session, system_actor(tenant.id), customer)
    assert [e["points"] for e in exported["points"]] == [12, 5]
