"""The admin's product pages: the list by category, and the create and edit forms."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.catalog.models import Product
from omniloop.core.db import Session
from omniloop.tenancy.models import Role, Tenant
from tests.catalog.factories import make_product
from tests.tenancy.factories import PASSWORD, make_staff, make_store, make_tenant

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _sign_in(client: TestClient, session: Session, tenant: Tenant, role: Role) -> None:
    stores = [make_store(session, tenant)] if role in (Role.store_manager, Role.cashier) else []
    member = make_staff(session, tenant, role, stores)
    token = _csrf(client.get("/admin/login").text)
    response = client.post("/admin/login", data={
        "csrf_token": token, "email": member.email, "password": PASSWORD,
        "brand": tenant.slug, "next": "/admin/products"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    client.cookies.set("omniloop_lang", "en")


def _form(client: TestClient, path: str, **fields: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return {"csrf_token": _csrf(page.text), **fields}


def _products(session: Session) -> list[Product]:
    session.rollback()  # end the test's read transaction so the request's writes show
    return list(session.scalars(select(Product).order_by(Product.sku)))


def test_list_groups_by_category_with_prices(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "DS-BASQUE", name="巴斯克乳酪蛋糕", category="甜點",
                 price_minor=13500)
    make_product(session, tenant, "CF-LATTE", name="拿鐵", category="咖啡", price_minor=13000)
    make_product(session, tenant, "GD-MUG", name="陶瓷馬克杯", category="",
                 price_minor=38050, active=False)
    _sign_in(client, session, tenant, Role.owner)

    page = client.get("/admin/products")
    assert page.status_code == 200
    html = page.text
    # categories in the order they were set up, not by code point (咖啡 < 甜點)
    assert html.index('data-category="甜點"') < html.index('data-category="咖啡"')
    for text in ("NT$130", "NT$135", "NT$380.50", "Uncategorised", "Inactive"):
        assert text in html
    assert 'href="/admin/products/new"' in html
    assert 'aria-current="page">Products<' in html

    chinese = client.get("/admin/products", params={"lang": "zh_TW"}).text
    for text in ("商品", "價格", "未分類", "$130"):
        assert text in chinese


def test_marketer_creates_and_edits_a_product(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    _sign_in(client, session, tenant, Role.marketer)

    data = _form(client, "/admin/products/new", sku="CF-MOCHA", name="摩卡",
                 category="咖啡", price="NT$145.50", active="on")
    created = client.post("/admin/products/new", data=data, follow_redirects=False)
    assert created.status_code == 303, created.text
    [product] = _products(session)
    assert (product.sku, product.name, product.category, product.price_minor,
            product.active) == ("CF-MOCHA", "摩卡", "咖啡", 14550, True)
    listing = client.get(created.headers["location"]).text
    assert "Product saved." in listing
    assert "NT$145.50" in listing

    edit_path = f"/admin/products/{product.id}/edit"
    form = client.get(edit_path).text
    assert 'value="145.5"' in form
    assert "checked" in form
    data = _form(client, edit_path, sku="CF-MOCHA", name="摩卡", category="咖啡",
                 price="1,150")  # the checkbox left unticked: no longer on sale
    edited = client.post(edit_path, data=data, follow_redirects=False)
    assert edited.status_code == 303, edited.text
    [product] = _products(session)
    assert (product.price_minor, product.active) == (115000, False)


def test_invalid_form_shows_field_errors_and_saves_nothing(client: TestClient,
                                                           session: Session) -> None:
    tenant = make_tenant(session)
    _sign_in(client, session, tenant, Role.owner)
    data = _form(client, "/admin/products/new", sku="bad sku", name="", category="咖啡",
                 price="-3")
    response = client.post("/admin/products/new", data=data)
    assert response.status_code == 422
    assert response.text.count('class="field-error"') == 3
    assert "Enter a price of zero or more" in response.text
    assert 'value="bad sku"' in response.text, "the form keeps what was typed"
    for price in ("12.345", "abc", "NaN"):
        data = _form(client, "/admin/products/new", sku="OK", name="ok", price=price)
        response = client.post("/admin/products/new", data=data)
        assert response.status_code == 422, price
    assert _products(session) == []


def test_duplicate_sku_in_the_form_is_explained(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    _sign_in(client, session, tenant, Role.marketer)
    data = _form(client, "/admin/products/new", sku="CF-LATTE", name="Latte", price="130")
    response = client.post("/admin/products/new", data=data)
    assert response.status_code == 409
    assert "Another product already uses the SKU &#39;CF-LATTE&#39;." in response.text
    assert len(_products(session)) == 1


def test_cashier_views_but_cannot_manage(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    product = make_product(session, tenant, "CF-LATTE", price_minor=13000)
    _sign_in(client, session, tenant, Role.cashier)

    page = client.get("/admin/products")
    assert page.status_code == 200
    assert "NT$130" in page.text
    assert "/admin/products/new" not in page.text
    assert "/edit" not in page.text

    assert client.get("/admin/products/new").status_code == 403
    assert client.get(f"/admin/products/{product.id}/edit").status_code == 403
    token = _csrf(page.text)  # the sign-out form's token is the session's token
    created = client.post("/admin/products/new", data={
        "csrf_token": token, "sku": "CF-MOCHA", "name": "摩卡", "price": "145"})
    assert created.status_code == 403
    edited = client.post(f"/admin/products/{product.id}/edit", data={
        "csrf_token": token, "sku": "CF-LATTE", "name": "拿鐵", "price": "1"})
    assert edited.status_code == 403
    [unchanged] = _products(session)
    assert unchanged.price_minor == 13000


def test_form_without_csrf_token_is_refused(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    _sign_in(client, session, tenant, Role.owner)
    response = client.post("/admin/products/new", data={"sku": "A", "name": "a",
                                                        "price": "1"})
    assert response.status_code == 403
    assert _products(session) == []


def test_products_page_needs_sign_in(client: TestClient) -> None:
    response = client.get("/admin/products", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")


def test_nav_shows_products_to_every_role(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    _sign_in(client, session, tenant, Role.store_manager)
    assert 'href="/admin/products"' in client.get("/admin").text
