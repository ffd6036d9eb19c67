"""Signing in and out of the admin: passwords, lockout, session expiry, CSRF, redirects."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from datetime import timedelta

from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy import select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.settings import get_settings
from omniloop.tenancy.models import AuditEntry, Role, StaffUser
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login


def test_login_then_dashboard(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林")
    owner = make_staff(session, tenant, email="owner@bean.tw")
    assert client.get("/admin", follow_redirects=False).headers["location"] == (
        "/admin/login?next=/admin")
    response = login(client, "OWNER@bean.tw ")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    page = client.get("/admin")
    assert page.status_code == 200
    assert "豆留森林" in page.text
    assert "總覽" in page.text
    assert 'lang="zh-Hant-TW"' in page.text
    fresh(session)
    assert session.get(StaffUser, (tenant.id, owner.id)).last_login_at is not None  # type: ignore[union-attr]


def test_wrong_password_is_401_and_generic(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    wrong = login(client, "owner@bean.tw", "not the password")
    unknown = login(client, "nobody@bean.tw", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "電子郵件或密碼不正確" in wrong.text
    assert "電子郵件或密碼不正確" in unknown.text
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_lockout_after_repeated_failures(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    owner = make_staff(session, tenant, email="owner@bean.tw")
    limit = get_settings().login_max_failures
    statuses = [login(client, "owner@bean.tw", "wrong password").status_code
                for _ in range(limit)]
    assert statuses == [401] * (limit - 1) + [423]
    locked = login(client, "owner@bean.tw")  # even the right password is refused now
    assert locked.status_code == 423
    assert "登入失敗次數過多" in locked.text
    fresh(session)
    assert session.scalars(select(AuditEntry.action).where(
        AuditEntry.entity_id == owner.id, AuditEntry.action != "staff.create")).all() == [
        "staff.locked"]

    session.execute(update(StaffUser).where(StaffUser.id == owner.id)
                    .values(locked_until=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert login(client, "owner@bean.tw").status_code == 303


def test_login_needs_csrf_token(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    client.get("/admin/login")
    response = client.post("/admin/login", data={"email": "owner@bean.tw",
                                                 "password": "correct horse battery"},
                           follow_redirects=False)
    assert response.status_code == 403
    assert 'data-code="csrf_failed"' in response.text
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_logout_ends_every_copy_of_the_session(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    login(client, "owner@bean.tw")
    stolen_cookie = client.cookies.get("omniloop_session")
    page = client.get("/admin")
    out = client.post("/admin/logout", data={"csrf_token": csrf_from(page.text)},
                      follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/admin", follow_redirects=False).status_code == 303
    client.cookies.set("omniloop_session", stolen_cookie or "")
    assert client.get("/admin", follow_redirects=False).status_code == 303


def _signed_session(data: Mapping[str, object], age_seconds: int) -> str:
    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    payload = base64.b64encode(json.dumps(data).encode())
    return PastSigner(get_settings().resolved_secret_key()).sign(payload).decode()


def test_expired_session_redirects_to_login(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    owner = make_staff(session, tenant, email="owner@bean.tw")
    data = {"staff": {"t": tenant.id, "s": owner.id, "e": owner.session_epoch}, "csrf": "x"}
    idle = get_settings().session_idle_seconds
    client.cookies.set("omniloop_session", _signed_session(data, 60))
    assert client.get("/admin", follow_redirects=False).status_code == 200
    client.cookies.set("omniloop_session", _signed_session(data, idle + 60))
    expired = client.get("/admin?x=1", follow_redirects=False)
    assert expired.status_code == 303
    assert expired.headers["location"] == "/admin/login?next=/admin%3Fx%3D1"


def test_tampered_session_cookie_is_ignored(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    owner = make_staff(session, tenant, email="owner@bean.tw")
    forged = base64.b64encode(json.dumps(
        {"staff": {"t": tenant.id, "s": owner.id, "e": 0}}).encode()).decode() + ".AAAA.BBBB"
    client.cookies.set("omniloop_session", forged)
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_deactivated_staff_is_signed_out(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    marketer = make_staff(session, tenant, role=Role.marketer, email="m@bean.tw")
    login(client, "m@bean.tw")
    assert client.get("/admin", follow_redirects=False).status_code == 200
    session.execute(update(StaffUser).where(StaffUser.id == marketer.id).values(active=False))
    session.commit()
    assert client.get("/admin", follow_redirects=False).status_code == 303
    assert login(client, "m@bean.tw").status_code == 401


def test_next_parameter_cannot_redirect_off_site(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = login(client, "owner@bean.tw", next_path=target)
        assert response.headers["location"] == "/admin", target


def test_brand_field_when_several_tenants(client: TestClient, session: Session) -> None:
    first = make_tenant(session, slug="first")
    second = make_tenant(session, slug="second")
    make_staff(session, first, email="same@bean.tw")
    make_staff(session, second, email="same@bean.tw", password="another long password")
    assert 'name="brand" value=""' in client.get("/admin/login").text
    no_brand = login(client, "same@bean.tw", brand="")
    assert no_brand.status_code == 404
    assert "沒有這個品牌代碼" in no_brand.text
    assert login(client, "same@bean.tw", "another long password", brand="first").status_code == 401
    assert login(client, "same@bean.tw", "another long password", brand="second").status_code == 303


def test_language_switch_is_remembered(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    login(client, "owner@bean.tw")
    english = client.get("/admin?lang=en")
    assert "Overview" in english.text
    assert 'lang="en"' in english.text
    assert "Overview" in client.get("/admin").text
    assert "總覽" in client.get("/admin?lang=zh-TW").text


def test_cashier_sees_only_permitted_nav(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    store = make_store(session, tenant)
    make_staff(session, tenant, role=Role.cashier, stores_=[store], email="c@bean.tw")
    login(client, "c@bean.tw")
    page = client.get("/admin?lang=en")
    assert page.status_code == 200
    assert "Active API keys" not in page.text
    assert 'href="/admin/api-keys"' not in page.text


def test_pages_default_to_zh_tw_whatever_the_browser_says(client: TestClient) -> None:
    page = client.get("/admin/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "登入品牌管理後台" in page.text
    assert "English" in page.text  # one click away
    api = client.get("/api/v1/stores", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert api.json()["error"]["message"].startswith("Authentication is required")
