"""The catalogue over HTTP: /api/v1/products."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.catalog.models import Product
from omniloop.core.db import Session
from tests.catalog.factories import make_product
from tests.tenancy.factories import bearer, make_api_key, make_tenant


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Product)) or 0


def test_create_list_get_and_update(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    key = bearer(make_api_key(session, tenant, ["admin"]))

    created = client.post("/api/v1/products", headers=key, json={
        "sku": "CF-LATTE", "name": "拿鐵", "category": "咖啡", "price_minor": 13000})
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("sku", "name", "category", "price_minor", "currency",
                                 "active")} == {
        "sku": "CF-LATTE", "name": "拿鐵", "category": "咖啡", "price_minor": 13000,
        "currency": "TWD", "active": True}

    client.post("/api/v1/products", headers=key, json={
        "sku": "DS-BASQUE", "name": "巴斯克乳酪蛋糕", "category": "甜點", "price_minor": 13000})
    listed = client.get("/api/v1/products", headers=key)
    assert listed.status_code == 200
    assert [p["sku"] for p in listed.json()] == ["CF-LATTE", "DS-BASQUE"]

    patched = client.patch(f"/api/v1/products/{body['id']}", headers=key,
                           json={"price_minor": 14000, "active": False})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["price_minor"], patched.json()["active"]) == (14000, False)
    assert patched.json()["name"] == "拿鐵"

    fetched = client.get(f"/api/v1/products/{body['id']}", headers=key)
    assert fetched.json()["price_minor"] == 14000
    only_active = client.get("/api/v1/products", headers=key, params={"active": "true"})
    assert [p["sku"] for p in only_active.json()] == ["DS-BASQUE"]
    desserts = client.get("/api/v1/products", headers=key, params={"category": "甜點"})
    assert [p["sku"] for p in desserts.json()] == ["DS-BASQUE"]


def test_duplicate_sku_is_409_sku_taken_in_the_requests_language(
        client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    key = bearer(make_api_key(session, tenant))
    body = {"sku": "CF-LATTE", "name": "Latte", "price_minor": 100}

    english = client.post("/api/v1/products", json=body,
                          headers={**key, "Accept-Language": "en"})
    assert english.status_code == 409
    assert english.json()["error"] == {
        "code": "sku_taken", "message": "Another product already uses the SKU 'CF-LATTE'."}
    chinese = client.post("/api/v1/products", json=body,
                          headers={**key, "Accept-Language": "zh-TW"})
    assert chinese.json()["error"]["message"] == "商品編號「CF-LATTE」已被其他商品使用。"
    assert _count(session) == 1


def test_duplicate_sku_on_update_is_409(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    mocha = make_product(session, tenant, "CF-MOCHA")
    response = client.patch(f"/api/v1/products/{mocha.id}", json={"sku": "CF-LATTE"},
                            headers=bearer(make_api_key(session, tenant)))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sku_taken"


def test_negative_or_fractional_price_is_422(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    key = bearer(make_api_key(session, tenant))
    for price in (-1, 120.5, 3_000_000_000):
        response = client.post("/api/v1/products", headers=key, json={
            "sku": "CF-LATTE", "name": "拿鐵", "price_minor": price})
        assert response.status_code == 422, (price, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"][0]["field"] == "price_minor"
    product = make_product(session, tenant)
    response = client.patch(f"/api/v1/products/{product.id}", headers=key,
                            json={"price_minor": -5})
    assert response.status_code == 422
    assert _count(session) == 1


def test_null_and_unknown_fields_on_update_are_422(client: TestClient,
                                                   session: Session) -> None:
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    key = bearer(make_api_key(session, tenant))
    null = client.patch(f"/api/v1/products/{product.id}", headers=key, json={"name": None})
    assert null.status_code == 422
    assert null.json()["error"]["code"] == "validation_error"
    unknown = client.patch(f"/api/v1/products/{product.id}", headers=key, json={"price": 1})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_field"


def test_another_brands_product_is_404(client: TestClient, session: Session) -> None:
    tenant, other = make_tenant(session), make_tenant(session)
    foreign = make_product(session, other, "CF-LATTE", price_minor=13000)
    key = bearer(make_api_key(session, tenant))

    got = client.get(f"/api/v1/products/{foreign.id}", headers=key)
    assert got.status_code == 404
    assert got.json()["error"]["code"] == "product_not_found"
    patched = client.patch(f"/api/v1/products/{foreign.id}", headers=key,
                           json={"price_minor": 1})
    assert patched.status_code == 404
    assert client.get("/api/v1/products", headers=key).json() == []
    session.refresh(foreign)
    assert foreign.price_minor == 13000


def test_ingest_key_reads_but_cannot_create(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    key = bearer(make_api_key(session, tenant, ["ingest"]))

    assert [p["sku"] for p in client.get("/api/v1/products", headers=key).json()] == [
        "CF-LATTE"]
    response = client.post("/api/v1/products", headers=key, json={
        "sku": "CF-MOCHA", "name": "摩卡", "price_minor": 14500})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_required"
    assert _count(session) == 1


def test_pos_key_cannot_update(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    response = client.patch(f"/api/v1/products/{product.id}", json={"price_minor": 1},
                            headers=bearer(make_api_key(session, tenant, ["pos"])))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_required"


def test_products_need_an_api_key(client: TestClient) -> None:
    response = client.get("/api/v1/products")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth_required"


def test_openapi_names_the_operations(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    operations = {spec["paths"][path][method]["operationId"]
                  for path in ("/api/v1/products", "/api/v1/products/{product_id}")
                  for method in spec["paths"][path]}
    assert operations == {"products-list", "products-create", "products-get",
                          "products-update"}
    assert spec["paths"]["/api/v1/products"]["post"]["description"]
