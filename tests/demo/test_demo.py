"""The demo brand: realistic, complete, identical on every run, and safe to load twice."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.catalog.models import Product
from omniloop.core import security
from omniloop.core.db import Session
from omniloop.customers.models import Customer, Event
from omniloop.demo import DemoResult, load_demo
from omniloop.demo.campaigns import new_members
from omniloop.orders.models import Order
from omniloop.tenancy import staff
from omniloop.tenancy.models import AuditEntry, Role, StaffStore, StaffUser, Store, Tenant

# Taipei City and New Taipei City, generously: every demo store must fall inside.
LAT_RANGE, LNG_RANGE = (24.90, 25.25), (121.40, 121.65)


# Every demo account has the same password. Hashing it once per test run (a real argon2id
# hash, just with one salt) saves a quarter-second per account on a busy machine.
_hash_once = cache(security.hash_password)


@pytest.fixture(autouse=True)
def _hash_demo_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "hash_password", _hash_once)


def _load(session: Session) -> DemoResult:
    result = load_demo(session, customers=40)
    session.commit()
    return result


def _snapshot(session: Session) -> dict[str, Any]:
    """Everything the demo writes, without ids and timestamps, in a stable order."""
    session.expire_all()
    stores = {s.id: s.code for s in session.scalars(select(Store))}
    assignments: dict[str, list[str]] = {}
    for link in session.scalars(select(StaffStore)):
        assignments.setdefault(link.staff_id, []).append(stores[link.store_id])
    return {
        "tenants": sorted((t.slug, t.name, t.currency, t.timezone, t.locale)
                          for t in session.scalars(select(Tenant))),
        "stores": sorted((s.code, s.name, s.address, s.latitude, s.longitude, s.phone,
                          repr(sorted(s.opening_hours.items())), s.active)
                         for s in session.scalars(select(Store))),
        "staff": sorted((m.email, m.name, m.role.value, m.active,
                         tuple(sorted(assignments.get(m.id, []))))
                        for m in session.scalars(select(StaffUser))),
        "products": sorted((p.sku, p.name, p.category, p.price_minor, p.active)
                           for p in session.scalars(select(Product))),
        "audit_entries": session.scalar(select(func.count()).select_from(AuditEntry)),
        "customers": sorted((c.name or "", str(c.birthday), str(c.gender), tuple(c.tags),
                             c.merged_into_id is not None)
                            for c in session.scalars(select(Customer))),
        "orders": sorted((o.external_id, o.total_minor, o.channel.value, o.paid_at.isoformat())
                         for o in session.scalars(select(Order))),
        "events": session.scalar(select(func.count()).select_from(Event)),
    }


def test_demo_brand_is_a_complete_taipei_cafe_chain(session: Session) -> None:
    result = _load(session)

    assert result.slug == "beanhouse"
    # The members with a history, the people who joined through the welcome coupon, and the
    # friends members referred (demo/loops.py).
    assert result.counts == {"stores": 8, "staff": 11, "products": 31,
                             "customers": 40 + new_members(40) + result.created["referrals"],
                             "orders": result.counts["orders"]}
    tenant = session.scalars(select(Tenant)).one()
    assert (tenant.currency, tenant.timezone, tenant.locale) == ("TWD", "Asia/Taipei", "zh_TW")

    stores = list(session.scalars(select(Store).order_by(Store.code)))
    assert len(stores) == 8
    assert len({s.code for s in stores}) == len({s.address for s in stores}) == 8
    for store in stores:
        assert re.fullmatch(r"(TPE|NTP)-[A-Z]+", store.code), store.code
        assert store.address.split(" ")[1][:3] in ("台北市", "新北市"), store.address
        assert store.latitude is not None
        assert store.longitude is not None
        assert LAT_RANGE[0] < store.latitude < LAT_RANGE[1], store.code
        assert LNG_RANGE[0] < store.longitude < LNG_RANGE[1], store.code
        assert re.fullmatch(r"02-\d{4}-\d{4}", store.phone), store.phone
        assert set(store.opening_hours) == {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
    xinyi = next(s for s in stores if s.code == "TPE-XINYI")
    assert "信義區" in xinyi.address
    assert abs((xinyi.latitude or 0) - 25.035) < 0.01
    closed_mondays = [s.code for s in stores if s.opening_hours["mon"] == []]
    assert closed_mondays == ["NTP-TAMSUI"]
    assert len({repr(s.opening_hours) for s in stores}) >= 5, "opening hours should vary"
    assert any(s.opening_hours["mon"] != s.opening_hours["sat"] for s in stores)


def test_demo_staff_cover_every_role_and_every_store(session: Session) -> None:
    result = _load(session)
    members = {m.email: m for m in session.scalars(select(StaffUser))}
    roles = [m.role for m in members.values()]
    assert {role: roles.count(role) for role in Role} == {
        Role.owner: 1, Role.marketer: 1, Role.store_manager: 1, Role.cashier: 8}
    assert "owner@beanhouse.demo" in members

    store_codes = {s.id: s.code for s in session.scalars(select(Store))}
    links: dict[str, set[str]] = {}
    for link in session.scalars(select(StaffStore)):
        links.setdefault(link.staff_id, set()).add(store_codes[link.store_id])
    assert links[members["manager@beanhouse.demo"].id] == {"TPE-XINYI", "TPE-DAAN"}
    cashier_stores = [links[m.id] for m in members.values() if m.role == Role.cashier]
    assert all(len(s) == 1 for s in cashier_stores)
    assert set().union(*cashier_stores) == set(store_codes.values())
    assert {login.role for login in result.logins} == set(Role)
    assert result.login_for("manager@beanhouse.demo").store_codes == ("TPE-XINYI", "TPE-DAAN")


def test_demo_catalogue_has_categories_and_taiwan_prices(session: Session) -> None:
    _load(session)
    products = list(session.scalars(select(Product)))
    assert 28 <= len(products) <= 34
    assert {p.category for p in products} == {"咖啡", "茶飲", "輕食", "甜點", "咖啡豆", "周邊商品"}
    by_sku = {p.sku: p for p in products}
    assert by_sku["CF-LATTE"].price_minor == 13000  # NT$130, in minor units
    for product in products:
        assert product.price_minor % 100 == 0, "menu prices are whole dollars"
        assert 5000 <= product.price_minor <= 100000, (product.sku, product.price_minor)
    drinks = [p.price_minor for p in products if p.category in ("咖啡", "茶飲")]
    beans = [p.price_minor for p in products if p.category == "咖啡豆"]
    assert max(drinks) < min(beans)
    assert [p.sku for p in products if not p.active] == ["CF-OSMANTHUS"]


def test_loading_twice_changes_nothing(session: Session) -> None:
    first = _load(session)
    before = _snapshot(session)
    campaigns: dict[str, int] = {kind: first.created[kind] for kind in (
        "campaigns", "claims", "redemptions", "voided", "codes", "audience",
        "touchpoints", "feedback", "referrals")}
    loyalty: dict[str, int] = {kind: first.created[kind] for kind in (
        "expired lots", "birthday coupons", "points redemptions", "no-shows", "blacklisted",
        "points adjustments") if kind in first.created}
    assert first.created == {"brand": 1, "stores": 8, "staff": 11, "products": 31,
                             "customers": 40 + new_members(40) + first.created["referrals"],
                             "orders": first.counts["orders"],
                             "events": first.created["events"], "merges": 1, **campaigns,
                             **loyalty}
    # The eight demo campaigns and the birthday campaign (the loop's referral welcome offer
    # is counted with the loop's rows).
    assert campaigns["campaigns"] == 8 + 1
    assert (loyalty["no-shows"], loyalty["blacklisted"], loyalty["points adjustments"]) == (
        17, 1, 3)
    assert first.counts["orders"] > 40

    second = _load(session)
    after = _snapshot(session)
    assert after == before
    assert second.created == {"brand": 0, "stores": 0, "staff": 0, "products": 0}
    assert (second.tenant_id, second.counts) == (first.tenant_id, first.counts)


def test_loading_completes_a_partial_demo_and_keeps_edits(session: Session) -> None:
    _load(session)
    latte = session.scalars(select(Product).where(Product.sku == "CF-LATTE")).one()
    latte.price_minor = 13500  # edited in the admin since
    session.delete(session.scalars(select(Product).where(Product.sku == "DS-CANELE")).one())
    session.commit()

    result = _load(session)
    assert result.created["products"] == 1
    assert result.counts["products"] == 31
    session.refresh(latte)
    assert latte.price_minor == 13500


def test_the_owner_signs_in_with_the_printed_password(client: TestClient,
                                                      session: Session) -> None:
    result = _load(session)
    login_page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page.text)
    assert token
    response = client.post("/admin/login", data={
        "csrf_token": token.group(1), "email": "owner@beanhouse.demo",
        "password": result.password, "brand": result.slug, "next": "/admin"},
        follow_redirects=False)
    assert response.status_code == 303, response.text
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200
    assert result.name in dashboard.text
    products = client.get("/admin/products")
    assert products.status_code == 200
    assert "拿鐵" in products.text


_LINK = re.compile(r'href="(/(?:admin|pos)[^"#]*)"')
# Pages that act when opened (sign-out) or stream files: not for a crawler.
_SKIP = ("/admin/logout", "/admin/login")


def test_every_admin_page_of_the_demo_opens(client: TestClient, session: Session) -> None:
    """Follow every admin link from the dashboard, as the owner, over the demo's data: each
    page answers (no 5xx), and none writes in its read transaction (SQLite refuses that)."""
    result = _load(session)
    login_page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page.text)
    assert token
    assert client.post("/admin/login", data={
        "csrf_token": token.group(1), "email": "owner@beanhouse.demo",
        "password": result.password, "brand": result.slug, "next": "/admin"},
        follow_redirects=False).status_code == 303
    seen: set[str] = set()
    queue = ["/admin"]
    # One page per kind of path is enough (customer 1 and customer 2 are the same page).
    kinds: set[str] = set()
    failures: list[str] = []
    while queue and len(seen) < 250:
        path = queue.pop(0).replace("&amp;", "&")
        if path in seen or path.startswith(_SKIP):
            continue
        seen.add(path)
        answer = client.get(path, follow_redirects=False)
        if answer.status_code >= 500:
            failures.append(f"{path}: {answer.status_code}")
            continue
        if "text/html" not in answer.headers.get("content-type", ""):
            continue
        for link in _LINK.findall(answer.text):
            kind = re.sub(r"/[0-9A-Z]{26}", "/{id}", link.split("?", 1)[0])
            if kind not in kinds:
                kinds.add(kind)
                queue.append(link)
    assert not failures, failures
    assert len(seen) > 40, sorted(seen)
