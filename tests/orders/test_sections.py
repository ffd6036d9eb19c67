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


def test_no_new_order_on_an_erased_customer(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE-01")
    key = make_api_key(session, tenant)
    person = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": "phone", "value": "0912-345-678"}]}).json()["customer"]["id"]
    client.post(f"/api/v1/customers/{person}/erase", headers=bearer(key),
                json={"reason": "asked to be forgotten"})
    refused = client.post("/api/v1/orders", headers=bearer(key), json={
        "external_id": "POS-9", "store_code": "TPE-01", "customer_id": person,
        "lines": [{"sku": "CF-LATTE", "quantity": 1, "unit_price_minor": 13000}],
        "paid_at": "2026-11-20T08:30:00+08:00"})
    assert refused.status_code == 409
    assert refused.json()["error"] | {"message": ""} == {
        "code": "customer_erased", "field": "customer_id", "message": ""}
    listed = client.get("/api/v1/orders", headers=bearer(key))
    assert listed.status_code == 200
    assert "POS-9" not in listed.text
