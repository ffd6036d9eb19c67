"""The orders module's part of the customer 360 page and of the personal-data export."""

from __future__ import annotations

from fastapi.testclient import TestClient

import omniloop.orders.sections  # noqa: F401  (registers the section and the export part)
from omniloop.core.db import Session
from tests.tenancy.factories import bearer, make_api_key, make_staff, make_store, make_tenant
from tests.web.admin_helpers import login


def test_export_and_360_page_include_the_persons_orders(client: TestClient,
                                                        session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE-01")
    make_staff(session, tenant, email="owner@bean.tw")
    key = make_api_key(session, tenant)
    order = client.post("/api/v1/orders", headers=bearer(key), json={
        "external_id": "POS-1", "store_code": "TPE-01",
        "identities": [{"kind": "phone", "value": "0912-345-678"}],
        "lines": [{"sku": "CF-LATTE", "name": "拿鐵", "quantity": 2, "unit_price_minor": 13000}],
        "paid_at": "2026-11-20T08:30:00+08:00"})
    assert order.status_code == 201, order.text
    customer_id = order.json()["customer_id"]
    exported = client.get(f"/api/v1/customers/{customer_id}/export", headers=bearer(key))
    assert exported.status_code == 200
    orders = exported.json()["orders"]
    assert [o["external_id"] for o in orders] == ["POS-1"]
    assert orders[0]["total_minor"] == 26000
    login(client, "owner@bean.tw")
    page = client.get(f"/admin/customers/{customer_id}")
    assert "拿鐵 ×2" in page.text
    assert "$260" in page.text
