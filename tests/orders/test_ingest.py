"""Recording orders over HTTP: customers, totals, idempotency, bad input, tenancy."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.core.errors import Forbidden
from omniloop.customers import identify as identify_service
from omniloop.customers.models import Customer, Event, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.orders import service
from omniloop.orders.models import Order, OrderLine
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import Role, Store, Tenant
from tests.catalog.factories import make_product
from tests.orders.factories import (
    LINES,
    NETS,
    TOTAL,
    count_rows,
    make_order,
    order_body,
    snapshot,
)
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def store(session: Session, tenant: Tenant) -> Store:
    return make_store(session, tenant, code="TPE-01")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> dict[str, str]:
    return bearer(make_api_key(session, tenant, scopes=["ingest"]))


def post(client: TestClient, key: dict[str, str], body: dict[str, Any],
         expected: int = 201) -> dict[str, Any]:
    response = client.post("/api/v1/orders", headers=key, json=body)
    assert response.status_code == expected, response.text
    return dict(response.json())


def error_of(client: TestClient, key: dict[str, str], body: dict[str, Any],
             status: int) -> dict[str, Any]:
    response = client.post("/api/v1/orders", headers={**key, "Accept-Language": "en"},
                           json=body)
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def fields_of(error: dict[str, Any]) -> list[str]:
    return [error.get("field", "")] + [d["field"] for d in error.get("details", [])]


def test_phone_in_two_formats_is_one_customer(client: TestClient, key: dict[str, str],
                                              session: Session, store: Store) -> None:
    first = post(client, key, order_body(
        store_code="tpe-01", identities=[{"kind": "phone", "value": "0912-345-678"}],
        traits={"name": "林小美"}, paid_at="2026-11-20T12:30:00+08:00"))
    second = post(client, key, order_body(
        store_id=store.id, identities=[{"kind": "phone", "value": "+886 912 345 678"}],
        paid_at="2026-11-21T09:00:00+08:00"))
    assert first["customer_id"] is not None
    assert second["customer_id"] == first["customer_id"]
    assert (first["channel"], first["store_id"]) == ("store", store.id)
    assert count_rows(session, Customer) == 1
    customer = session.get(Customer, (store.tenant_id, first["customer_id"]))
    assert customer is not None
    assert customer.name == "林小美"
    listed = client.get(f"/api/v1/customers/{first['customer_id']}/orders", headers=key)
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()] == [second["id"], first["id"]]


def test_totals_discounts_and_lines(client: TestClient, key: dict[str, str]) -> None:
    order = post(client, key, order_body(total_minor=TOTAL, currency="TWD"))
    assert (order["subtotal_minor"], order["discount_minor"], order["total_minor"]) == (
        33000, 3000, TOTAL)
    assert (order["refunded_minor"], order["status"], order["currency"]) == (0, "paid", "TWD")
    assert (order["channel"], order["store_id"], order["customer_id"]) == (
        "online", None, None)
    assert [(line["position"], line["sku"], line["quantity"], line["total_minor"],
             line["net_minor"], line["refunded_quantity"]) for line in order["lines"]] == [
        (1, "CF-LATTE", 2, 25000, NETS[0], 0), (2, "DS-BASQUE", 1, 8000, NETS[1], 0)]
    assert order["paid_at"] == "2026-11-20T04:30:00Z"
    assert order["refunds"] == []


def test_paid_at_without_offset_is_the_brands_local_time(client: TestClient,
                                                         key: dict[str, str]) -> None:
    order = post(client, key, order_body(paid_at="2026-11-20T10:00:00"))
    assert order["paid_at"] == "2026-11-20T02:00:00Z"  # Asia/Taipei is UTC+8


def test_names_and_categories_come_from_the_catalogue_when_missing(
        client: TestClient, key: dict[str, str], session: Session, tenant: Tenant) -> None:
    make_product(session, tenant, "CF-LATTE", name="拿鐵", category="咖啡")
    order = post(client, key, order_body(lines=[
        {"sku": "CF-LATTE", "quantity": 1, "unit_price_minor": 12000},
        {"sku": "CF-LATTE", "name": "Latte (promo)", "quantity": 1, "unit_price_minor": 9900},
        {"sku": "ZZ-UNKNOWN", "quantity": 3, "unit_price_minor": 500},
        {"sku": "ZZ-OTHER", "name": "手寫品項", "category": "雜項", "quantity": 1,
         "unit_price_minor": 0},
    ], discount_minor=0))
    assert [(line["name"], line["category"]) for line in order["lines"]] == [
        ("拿鐵", "咖啡"), ("Latte (promo)", "咖啡"), ("ZZ-UNKNOWN", ""), ("手寫品項", "雜項")]
    assert order["total_minor"] == 12000 + 9900 + 1500


def test_anonymous_order_records_a_purchase_event(client: TestClient, key: dict[str, str],
                                                  session: Session, store: Store) -> None:
    order = post(client, key, order_body(store_id=store.id))
    assert order["customer_id"] is None
    fresh(session)
    events = list(session.scalars(select(Event)))
    assert len(events) == 1
    event = events[0]
    assert (event.type, event.channel, event.source, event.customer_id, event.store_id,
            event.client_event_id) == ("purchase", "offline", "pos", None, store.id,
                                       f"order:{order['id']}")
    assert event.properties == {"order_id": order["id"], "external_id": order["external_id"],
                                "total_minor": TOTAL, "currency": "TWD", "items": 3}


def test_customer_id_resolves_to_the_survivor_and_lists_merged_orders(
        client: TestClient, key: dict[str, str], session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    older = identify_service.identify(session, actor, [
        IdentityIn(kind=IdentityKind.pos_card, value="CARD-1")]).customer.id
    session.commit()
    newer = identify_service.identify(session, actor, [
        IdentityIn(kind=IdentityKind.phone, value="0922333444")]).customer.id
    session.commit()
    before_merge = post(client, key, order_body(customer_id=newer,
                                                paid_at="2026-11-01T10:00:00+08:00"))
    assert before_merge["customer_id"] == newer
    identify_service.identify(session, actor, [
        IdentityIn(kind=IdentityKind.pos_card, value="CARD-1"),
        IdentityIn(kind=IdentityKind.phone, value="0922333444")])
    session.commit()
    after_merge = post(client, key, order_body(customer_id=newer))
    assert after_merge["customer_id"] == older
    for customer_id in (older, newer):
        listed = client.get(f"/api/v1/customers/{customer_id}/orders", headers=key).json()
        assert [o["id"] for o in listed] == [after_merge["id"], before_merge["id"]]


def test_a_retry_returns_the_first_order_and_changes_nothing(
        client: TestClient, key: dict[str, str], session: Session) -> None:
    body = order_body(identities=[{"kind": "phone", "value": "0912345678"}])
    first = post(client, key, body)
    before = snapshot(session)
    again = post(client, key, body, expected=200)
    assert again == first
    # The optional checks may differ: the order is the same.
    with_total = post(client, key, {**body, "total_minor": TOTAL, "currency": "TWD"},
                      expected=200)
    assert with_total["id"] == first["id"]
    assert snapshot(session) == before
    assert count_rows(session, Order) == 1
    assert count_rows(session, Event) == 1


@pytest.mark.parametrize("change", [
    {"discount_minor": 2000},
    {"paid_at": "2026-11-20T12:31:00+08:00"},
    {"source": "shopline"},
    {"identities": [{"kind": "phone", "value": "0987654321"}]},
    {"lines": [LINES[0]]},
])
def test_the_same_external_id_with_other_content_is_a_conflict(
        client: TestClient, key: dict[str, str], session: Session,
        change: dict[str, Any]) -> None:
    body = order_body(identities=[{"kind": "phone", "value": "0912345678"}])
    post(client, key, body)
    before = snapshot(session)
    error = error_of(client, key, {**body, **change}, 409)
    assert (error["code"], error["field"]) == ("order_conflict", "external_id")
    assert body["external_id"] in error["message"]
    assert snapshot(session) == before


def test_a_store_bound_key_records_only_its_store(client: TestClient, session: Session,
                                                  tenant: Tenant, store: Store) -> None:
    other = make_store(session, tenant, code="TPE-02")
    pos = bearer(make_api_key(session, tenant, scopes=["pos"], store=store))
    before = snapshot(session)
    for body, status, code, field in [
        (order_body(store_id=other.id), 404, "store_not_found", "store_id"),
        (order_body(store_code="TPE-02"), 404, "store_not_found", "store_code"),
        (order_body(), 422, "store_required", "store_id"),
        (order_body(channel="online"), 422, "store_required", "store_id"),
    ]:
        error = error_of(client, pos, body, status)
        assert (error["code"], error["field"]) == (code, field)
    assert snapshot(session) == before
    mine = post(client, pos, order_body(store_id=store.id))
    assert mine["store_id"] == store.id
    # The key can read its store's orders but not the other store's.
    theirs = make_order(session, tenant, store_id=other.id)
    assert client.get(f"/api/v1/orders/{mine['id']}", headers=pos).status_code == 200
    hidden = client.get(f"/api/v1/orders/{theirs.id}", headers=pos)
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "order_not_found"
    assert [o["id"] for o in client.get("/api/v1/orders", headers=pos).json()] == [mine["id"]]


def test_another_brands_customer_id_is_404_naming_the_field(
        client: TestClient, key: dict[str, str], session: Session) -> None:
    rival = make_tenant(session, slug="rival")
    theirs = identify_service.identify(session, system_actor(rival.id), [
        IdentityIn(kind=IdentityKind.phone, value="0912345678")]).customer
    session.commit()
    before = snapshot(session)
    error = error_of(client, key, order_body(customer_id=theirs.id), 404)
    assert (error["code"], error["field"]) == ("customer_not_found", "customer_id")
    assert snapshot(session) == before


def test_another_brands_store_and_order_are_404(client: TestClient, key: dict[str, str],
                                                session: Session) -> None:
    rival = make_tenant(session, slug="rival")
    rival_store = make_store(session, rival)
    rival_order = make_order(session, rival)
    before = snapshot(session)
    error = error_of(client, key, order_body(store_id=rival_store.id), 404)
    assert (error["code"], error["field"]) == ("store_not_found", "store_id")
    assert snapshot(session) == before
    assert client.get(f"/api/v1/orders/{rival_order.id}", headers=key).status_code == 404
    assert client.get("/api/v1/orders", headers=key).json() == []
    # The same external id is another order in another brand.
    mine = post(client, key, order_body(external_id=rival_order.external_id))
    assert mine["id"] != rival_order.id


@pytest.mark.parametrize(("change", "status", "code", "field"), [
    ({"identities": [{"kind": "phone", "value": "not a phone"}]}, 422, "invalid_identity",
     "identities.0.value"),
    ({"identities": [{"kind": "phone", "value": "0912345678"},
                     {"kind": "phone", "value": "09"}]}, 422, "invalid_identity",
     "identities.1.value"),
    ({"identities": [{"kind": "fax", "value": "0223456789"}]}, 422, "validation_error",
     "identities.0.kind"),
    ({"lines": [{**LINES[0], "quantity": 0}]}, 422, "validation_error", "lines.0.quantity"),
    ({"lines": [LINES[0], {**LINES[1], "quantity": -1}]}, 422, "validation_error",
     "lines.1.quantity"),
    ({"lines": [{**LINES[0], "quantity": 1.5}]}, 422, "validation_error", "lines.0.quantity"),
    ({"lines": [{**LINES[0], "unit_price_minor": -100}]}, 422, "validation_error",
     "lines.0.unit_price_minor"),
    ({"lines": []}, 422, "validation_error", "lines"),
    ({"lines": [{**LINES[0], "discount_minor": 26001}]}, 422, "discount_too_large",
     "lines.0.discount_minor"),
    ({"lines": [{**LINES[0], "total_minor": 26000}]}, 422, "total_mismatch",
     "lines.0.total_minor"),
    ({"discount_minor": 33001}, 422, "discount_too_large", "discount_minor"),
    ({"total_minor": TOTAL + 1}, 422, "total_mismatch", "total_minor"),
    ({"currency": "USD"}, 422, "currency_mismatch", "currency"),
    ({"paid_at": "2999-01-01T00:00:00+08:00"}, 422, "paid_at_in_future", "paid_at"),
    ({"channel": "store"}, 422, "store_required", "store_id"),
    ({"customer_id": "01JCUSTOMER000000000000000",
      "identities": [{"kind": "phone", "value": "0912345678"}]}, 422, "ambiguous_customer",
     "customer_id"),
    ({"traits": {"name": "Amy"}}, 422, "traits_need_identities", "traits"),
    ({"customer_id": "01JNOSUCHCUSTOMER000000000"}, 404, "customer_not_found",
     "customer_id"),
    ({"external_id": ""}, 422, "validation_error", "external_id"),
    ({"colour": "red"}, 422, "unknown_field", "colour"),
])
def test_bad_input_names_the_field_and_writes_nothing(
        client: TestClient, key: dict[str, str], session: Session, tenant: Tenant,
        change: dict[str, Any], status: int, code: str, field: str) -> None:
    make_order(session, tenant)
    before = snapshot(session)
    error = error_of(client, key, order_body(**change), status)
    assert error["code"] == code
    assert field in fields_of(error), error
    assert snapshot(session) == before


def test_store_rules(client: TestClient, key: dict[str, str], session: Session,
                     store: Store) -> None:
    before = snapshot(session)
    for change, code, field in [
        ({"channel": "online", "store_id": store.id}, "store_not_allowed", "store_id"),
        ({"store_id": store.id, "store_code": store.code}, "ambiguous_store", "store_code"),
    ]:
        error = error_of(client, key, order_body(**change), 422)
        assert (error["code"], error["field"]) == (code, field)
    assert snapshot(session) == before


def test_errors_speak_the_requests_language(client: TestClient, key: dict[str, str]) -> None:
    response = client.post("/api/v1/orders", json=order_body(total_minor=1),
                           headers={**key, "Accept-Language": "zh-TW"})
    assert response.status_code == 422
    assert "總額" in response.json()["error"]["message"]


def test_pos_and_ingest_keys_may_record_others_may_not(
        client: TestClient, session: Session, tenant: Tenant, store: Store) -> None:
    for scopes in (["pos"], ["ingest"], ["admin"]):
        post(client, bearer(make_api_key(session, tenant, scopes=scopes)),
             order_body(store_id=store.id))
    fresh(session)
    marketer = staff_actor(tenant.id, "01JSTAFF000000000000000000", "marketer",
                           Role.marketer, frozenset())
    with pytest.raises(Forbidden):
        service.ingest_order(session, marketer, OrderIn.model_validate(order_body()))
    cashier = staff_actor(tenant.id, "01JSTAFF000000000000000001", "cashier", Role.cashier,
                          frozenset({store.id}))
    order, created = service.ingest_order(session, cashier,
                                          OrderIn.model_validate(order_body(store_id=store.id)))
    assert created
    assert order.store_id == store.id
    session.rollback()


def test_list_filters_and_pages(client: TestClient, key: dict[str, str], session: Session,
                                tenant: Tenant, store: Store) -> None:
    made = [post(client, key, order_body(store_id=store.id if day % 2 else None,
                                         paid_at=f"2026-11-{day:02d}T12:00:00+08:00"))
            for day in range(1, 8)]
    newest_first = [o["id"] for o in reversed(made)]
    everything = client.get("/api/v1/orders", headers=key).json()
    assert [o["id"] for o in everything] == newest_first
    in_store = client.get("/api/v1/orders", headers=key, params={"store_id": store.id}).json()
    assert [o["id"] for o in in_store] == [made[6]["id"], made[4]["id"], made[2]["id"],
                                           made[0]["id"]]
    period = client.get("/api/v1/orders", headers=key, params={
        "paid_from": "2026-11-03T00:00:00", "paid_to": "2026-11-05T00:00:00"}).json()
    assert [o["id"] for o in period] == [made[3]["id"], made[2]["id"]]
    pages: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = client.get("/api/v1/orders", headers=key, params=params).json()
        if not page:
            break
        pages += [o["id"] for o in page]
        params = {"limit": 3, "before": page[-1]["paid_at"], "before_id": page[-1]["id"]}
    assert pages == newest_first
    hidden = client.get("/api/v1/orders", headers=key, params={"store_id": "nope"})
    assert hidden.status_code == 404
    assert count_rows(session, OrderLine) == 14


def test_unknown_customer_orders_is_404(client: TestClient, key: dict[str, str]) -> None:
    response = client.get("/api/v1/customers/01JNOSUCHCUSTOMER000000000/orders", headers=key)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"
