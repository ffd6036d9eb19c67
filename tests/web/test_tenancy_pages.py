"""The admin pages of the tenancy module, through HTTP: stores, staff, API keys, audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.tenancy import audit
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import ApiKey, AuditEntry, Role, StaffStore, StaffUser, Store, Tenant
from tests.tenancy.factories import (
    PASSWORD,
    bearer,
    fresh,
    make_staff,
    make_store,
    make_tenant,
)
from tests.web.admin_helpers import csrf_from, login

VALID_STORE = {
    "code": "tpe01", "name": "台北信義店", "address": "台北市信義區松壽路 11 號",
    "phone": "02-2720-1234", "latitude": "25.0330", "longitude": "121.5654", "active": "on",
    "hours_mon": "07:30-21:00", "hours_tue": "07:30-21:00", "hours_wed": "",
    "hours_thu": "07:30-21:00", "hours_fri": "07:30-22:00",
    "hours_sat": "07:00-11:00, 13:00-20:00", "hours_sun": "",
}


def sign_in(client: TestClient, member: StaffUser, password: str = PASSWORD) -> None:
    response = login(client, member.email, password)
    assert response.status_code == 303, response.text


def post_form(client: TestClient, form_path: str, data: Mapping[str, object],
              action: str | None = None) -> Response:
    """Open the form page for its CSRF token, then post `data` as the browser would."""
    token = csrf_from(client.get(form_path).text)
    return client.post(action or form_path, data={"csrf_token": token, **data},
                       follow_redirects=False)


@contextmanager
def other_browser(app: FastAPI, member: StaffUser,
                  password: str = PASSWORD) -> Iterator[TestClient]:
    with TestClient(app) as c:
        sign_in(c, member, password)
        yield c


def store_count(session: Session, tenant: Tenant) -> int:
    fresh(session)
    return session.scalar(select(func.count()).select_from(Store)
                          .where(Store.tenant_id == tenant.id)) or 0


def audit_actions(session: Session, tenant: Tenant) -> list[str]:
    fresh(session)
    return list(session.scalars(select(AuditEntry.action).where(AuditEntry.tenant_id == tenant.id)
                                .order_by(AuditEntry.at)))


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林")


@pytest.fixture
def owner(session: Session, tenant: Tenant) -> StaffUser:
    return make_staff(session, tenant, email="owner@bean.tw")


# --- stores ---------------------------------------------------------------------------------

def test_owner_creates_and_edits_a_store(client: TestClient, session: Session, tenant: Tenant,
                                         owner: StaffUser) -> None:
    sign_in(client, owner)
    response = post_form(client, "/admin/stores/new", VALID_STORE)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/stores?done=store_created"

    page = client.get("/admin/stores?done=store_created")
    assert "已建立門市。" in page.text
    assert "<code>TPE01</code>" in page.text
    assert "台北信義店" in page.text
    assert "https://www.google.com/maps/search/?api=1&amp;query=25.033%2C121.5654" in page.text

    fresh(session)
    store = session.scalars(select(Store).where(Store.tenant_id == tenant.id)).one()
    assert (store.code, store.name, store.phone, store.active) == (
        "TPE01", "台北信義店", "02-2720-1234", True)
    assert (store.latitude, store.longitude) == (25.033, 121.5654)
    assert store.opening_hours["mon"] == [{"open": "07:30", "close": "21:00"}]
    assert store.opening_hours["sat"] == [{"open": "07:00", "close": "11:00"},
                                          {"open": "13:00", "close": "20:00"}]
    assert "wed" not in store.opening_hours
    assert "sun" not in store.opening_hours

    form = client.get(f"/admin/stores/{store.id}")
    assert form.status_code == 200
    assert 'value="07:00-11:00, 13:00-20:00"' in form.text
    assert 'value="25.033"' in form.text

    edited = dict(VALID_STORE, name="信義旗艦店", hours_mon="", hours_sun="10:00-18:00")
    del edited["active"]  # an unchecked box is not sent
    del edited["code"]
    response = post_form(client, f"/admin/stores/{store.id}", edited)
    assert response.status_code == 303
    assert "已儲存門市資料。" in client.get(response.headers["location"]).text

    fresh(session)
    store = session.scalars(select(Store).where(Store.tenant_id == tenant.id)).one()
    assert (store.name, store.active, store.code) == ("信義旗艦店", False, "TPE01")
    assert "mon" not in store.opening_hours
    assert store.opening_hours["sun"] == [{"open": "10:00", "close": "18:00"}]
    assert audit_actions(session, tenant)[-2:] == ["store.create", "store.update"]
    assert "停用" in client.get("/admin/stores").text


@pytest.mark.parametrize(("changes", "field_error"), [
    ({"latitude": "95"}, "緯度是 -90 到 90 之間的數字"),
    ({"latitude": "north"}, "緯度是 -90 到 90 之間的數字"),
    ({"longitude": "181"}, "經度是 -180 到 180 之間的數字"),
    ({"longitude": ""}, "緯度與經度請同時填寫，或都不填。"),
    ({"hours_tue": "21:00-07:30"}, "打烊時間須晚於開店時間"),
    ({"hours_thu": "9-5"}, "請填寫如 07:30-21:00 的時段"),
    ({"hours_fri": "07:30 to 21:00"}, "請填寫如 07:30-21:00 的時段"),
    ({"name": "  "}, "請填寫名稱"),
    ({"code": "台北"}, "請使用最多 32 個英文字母"),
])
def test_invalid_store_form_is_422_and_writes_nothing(
        client: TestClient, session: Session, tenant: Tenant, owner: StaffUser,
        changes: dict[str, str], field_error: str) -> None:
    sign_in(client, owner)
    response = post_form(client, "/admin/stores/new", dict(VALID_STORE, **changes))
    assert response.status_code == 422
    html: str = response.text
    assert field_error in html
    assert 'class="field-error"' in html
    assert 'aria-invalid="true"' in html
    assert "尚未儲存任何變更" in html
    for value in changes.values():  # the user's input comes back as typed
        if value.strip():
            assert f'value="{value}"' in html
    assert 'value="台北市信義區松壽路 11 號"' in html  # and so do the other fields
    assert store_count(session, tenant) == 0
    assert "store.create" not in audit_actions(session, tenant)


def test_invalid_edit_keeps_the_store_unchanged(client: TestClient, session: Session,
                                                tenant: Tenant, owner: StaffUser) -> None:
    store = make_store(session, tenant, code="A01", name="信義店")
    sign_in(client, owner)
    data = dict(VALID_STORE, name="新名字", hours_mon="25:00-26:00")
    del data["code"]
    response = post_form(client, f"/admin/stores/{store.id}", data)
    assert response.status_code == 422
    assert 'value="A01" disabled' in response.text
    assert 'value="新名字"' in response.text
    fresh(session)
    assert session.get(Store, (tenant.id, store.id)).name == "信義店"  # type: ignore[union-attr]
    assert "store.update" not in audit_actions(session, tenant)


def test_duplicate_store_code_is_409(client: TestClient, session: Session, tenant: Tenant,
                                     owner: StaffUser) -> None:
    make_store(session, tenant, code="TPE01")
    sign_in(client, owner)
    response = post_form(client, "/admin/stores/new", VALID_STORE)  # code "tpe01"
    assert response.status_code == 409
    assert "已有其他門市使用代碼「TPE01」。" in response.text
    assert 'value="台北信義店"' in response.text
    assert store_count(session, tenant) == 1


def test_cashier_may_only_view_the_store_list(client: TestClient, session: Session,
                                              tenant: Tenant) -> None:
    store = make_store(session, tenant, code="A01", name="信義店")
    cashier = make_staff(session, tenant, Role.cashier, [store], email="cashier@bean.tw")
    sign_in(client, cashier)
    listing = client.get("/admin/stores")
    assert listing.status_code == 200
    assert "信義店" in listing.text
    assert "/admin/stores/new" not in listing.text
    assert f'href="/admin/stores/{store.id}"' not in listing.text
    assert client.get("/admin/stores/new").status_code == 403
    assert client.get(f"/admin/stores/{store.id}").status_code == 403
    forbidden = client.post("/admin/stores/new", data={
        "csrf_token": csrf_from(listing.text), **VALID_STORE}, follow_redirects=False)
    assert forbidden.status_code == 403
    assert 'data-code="forbidden"' in forbidden.text
    assert store_count(session, tenant) == 1
    for path in ("/admin/staff", "/admin/api-keys", "/admin/audit"):
        assert client.get(path).status_code == 403, path
        assert f'href="{path}"' not in listing.text


def test_store_manager_sees_and_edits_only_their_store(client: TestClient, session: Session,
                                                       tenant: Tenant) -> None:
    mine = make_store(session, tenant, code="A01", name="信義店")
    other = make_store(session, tenant, code="B02", name="板橋店")
    manager = make_staff(session, tenant, Role.store_manager, [mine], email="boss@bean.tw")
    sign_in(client, manager)
    listing = client.get("/admin/stores").text
    assert "信義店" in listing
    assert "板橋店" not in listing
    assert "<code>B02</code>" not in listing  # a bare "B02" can occur inside a random id
    assert "/admin/stores/new" not in listing
    assert client.get(f"/admin/stores/{other.id}").status_code == 404
    token = csrf_from(listing)
    data = {k: v for k, v in VALID_STORE.items() if k != "code"}
    refused = client.post(f"/admin/stores/{other.id}", data={"csrf_token": token, **data},
                          follow_redirects=False)
    assert refused.status_code == 404
    done = client.post(f"/admin/stores/{mine.id}", data={"csrf_token": token, **data},
                       follow_redirects=False)
    assert done.status_code == 303
    fresh(session)
    assert session.get(Store, (tenant.id, other.id)).name == "板橋店"  # type: ignore[union-attr]
    assert session.get(Store, (tenant.id, mine.id)).name == "台北信義店"  # type: ignore[union-attr]


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_post_without_valid_csrf_token_is_403(client: TestClient, session: Session,
                                              tenant: Tenant, owner: StaffUser,
                                              token: str | None) -> None:
    sign_in(client, owner)
    data: dict[str, str] = dict(VALID_STORE)
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/admin/stores/new", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert 'data-code="csrf_failed"' in response.text
    assert store_count(session, tenant) == 0


# --- staff ----------------------------------------------------------------------------------

def test_owner_adds_and_edits_staff(app: FastAPI, client: TestClient, session: Session,
                                    tenant: Tenant, owner: StaffUser) -> None:
    store = make_store(session, tenant, code="A01", name="信義店")
    sign_in(client, owner)
    new = {"email": "Amy@Bean.tw", "name": "林小美", "role": "cashier", "locale": "",
           "password": "a long enough password", "store_ids": [store.id]}
    response = post_form(client, "/admin/staff/new", new)
    assert response.status_code == 303, response.text
    listing = client.get(response.headers["location"]).text
    assert "已新增員工。" in listing
    row = listing[listing.index('data-staff="amy@bean.tw"'):]
    row = row[:row.index("</tr>")]
    assert "林小美" in row
    assert "收銀員" in row
    assert "信義店" in row
    assert "啟用" in row

    fresh(session)
    amy = session.scalars(select(StaffUser).where(StaffUser.email == "amy@bean.tw")).one()
    assert amy.role == Role.cashier
    assert session.scalars(select(StaffStore.store_id)
                           .where(StaffStore.staff_id == amy.id)).all() == [store.id]
    with other_browser(app, amy, "a long enough password") as amys:
        assert amys.get("/admin/stores").status_code == 200

    form = client.get(f"/admin/staff/{amy.id}").text
    assert 'value="amy@bean.tw" disabled' in form
    assert "checked" in form
    response = post_form(client, f"/admin/staff/{amy.id}", {
        "name": "林美美", "role": "store_manager", "locale": "en", "active": "on",
        "password": "another long password", "store_ids": [store.id]})
    assert response.status_code == 303
    fresh(session)
    amy = session.get(StaffUser, (tenant.id, amy.id))  # type: ignore[assignment]
    assert (amy.name, amy.role, amy.locale) == ("林美美", Role.store_manager, "en")
    with TestClient(app) as c:
        assert login(c, "amy@bean.tw", "a long enough password").status_code == 401
        assert login(c, "amy@bean.tw", "another long password").status_code == 303
    assert audit_actions(session, tenant)[-2:] == ["staff.create", "staff.update"]
    # the audit log says a password changed, never what it is
    assert "another long password" not in client.get("/admin/audit").text


@pytest.mark.parametrize(("changes", "status", "message"), [
    ({"email": "owner@bean.tw"}, 409, "已有員工使用電子郵件「owner@bean.tw」。"),
    ({"store_ids": []}, 400, "店長與收銀員至少要指派一間門市。"),
    ({"email": "not-an-email"}, 422, "請填寫有效的電子郵件地址。"),
    ({"password": "short"}, 422, "密碼至少需要 10 個字元。"),
    ({"role": "emperor"}, 422, "請選擇角色。"),
    ({"store_ids": ["no-such-store"]}, 404, "找不到門市。"),
])
def test_staff_form_errors_are_shown_and_nothing_is_written(
        client: TestClient, session: Session, tenant: Tenant, owner: StaffUser,
        changes: dict[str, object], status: int, message: str) -> None:
    store = make_store(session, tenant, code="A01")
    sign_in(client, owner)
    data = {"email": "new@bean.tw", "name": "新同事", "role": "cashier", "locale": "",
            "password": "a long enough password", "store_ids": [store.id], **changes}
    response = post_form(client, "/admin/staff/new", data)
    assert response.status_code == status
    assert message in response.text
    assert 'value="新同事"' in response.text
    assert "a long enough password" not in response.text
    fresh(session)
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 1


def test_last_owner_cannot_be_demoted_or_deactivated(client: TestClient, session: Session,
                                                     tenant: Tenant, owner: StaffUser) -> None:
    sign_in(client, owner)
    base = {"name": owner.name, "role": "owner", "locale": "", "active": "on"}
    demote = post_form(client, f"/admin/staff/{owner.id}", dict(base, role="marketer"))
    assert demote.status_code == 409
    assert "品牌至少要保留一位啟用中的擁有者。" in demote.text
    deactivate = {k: v for k, v in base.items() if k != "active"}
    assert post_form(client, f"/admin/staff/{owner.id}",
                     deactivate).status_code == 409
    fresh(session)
    member = session.get(StaffUser, (tenant.id, owner.id))
    assert member is not None
    assert (member.role, member.active) == (Role.owner, True)

    # With a second owner the first may step down, and stays signed in to see the result.
    second = make_staff(session, tenant, Role.owner, email="second@bean.tw")
    response = post_form(client, f"/admin/staff/{owner.id}", dict(base, role="marketer"))
    assert response.status_code == 303
    assert client.get("/admin/staff").status_code == 200
    fresh(session)
    assert session.get(StaffUser, (tenant.id, owner.id)).role == Role.marketer  # type: ignore[union-attr]
    assert session.get(StaffUser, (tenant.id, second.id)).role == Role.owner  # type: ignore[union-attr]


def test_changing_own_password_keeps_this_session(client: TestClient, session: Session,
                                                  tenant: Tenant, owner: StaffUser) -> None:
    sign_in(client, owner)
    response = post_form(client, f"/admin/staff/{owner.id}", {
        "name": owner.name, "role": "owner", "active": "on", "password": "a brand new password"})
    assert response.status_code == 303
    assert client.get("/admin/staff", follow_redirects=False).status_code == 200


def test_who_may_see_and_manage_staff(app: FastAPI, session: Session, tenant: Tenant,
                                      owner: StaffUser) -> None:
    store = make_store(session, tenant, code="A01")
    marketer = make_staff(session, tenant, Role.marketer, email="mk@bean.tw")
    manager = make_staff(session, tenant, Role.store_manager, [store], email="mgr@bean.tw")
    for member in (marketer, manager):
        with other_browser(app, member) as c:
            listing = c.get("/admin/staff")
            assert listing.status_code == 200
            assert "/admin/staff/new" not in listing.text
            assert c.get("/admin/staff/new").status_code == 403
            assert c.get(f"/admin/staff/{owner.id}").status_code == 403
            response = c.post(f"/admin/staff/{member.id}", data={
                "csrf_token": csrf_from(listing.text), "name": "Me", "role": "owner",
                "active": "on"}, follow_redirects=False)
            assert response.status_code == 403
    fresh(session)
    assert session.get(StaffUser, (tenant.id, marketer.id)).role == Role.marketer  # type: ignore[union-attr]
    assert session.get(StaffUser, (tenant.id, manager.id)).role == Role.store_manager  # type: ignore[union-attr]


def test_staff_list_shows_lock_and_last_sign_in(client: TestClient, session: Session,
                                                tenant: Tenant, owner: StaffUser) -> None:
    locked = make_staff(session, tenant, Role.marketer, email="locked@bean.tw")
    never = make_staff(session, tenant, Role.marketer, email="never@bean.tw")
    session.execute(update(StaffUser).where(StaffUser.id == locked.id)
                    .values(locked_until=utcnow() + timedelta(minutes=10)))
    session.execute(update(StaffUser).where(StaffUser.id == never.id)
                    .values(locked_until=utcnow() - timedelta(minutes=10)))
    session.commit()
    sign_in(client, owner)
    html = client.get("/admin/staff").text

    def row(email: str) -> str:
        start = html.index(f'data-staff="{email}"')
        return html[start:html.index("</tr>", start)]

    assert "已鎖定" in row("locked@bean.tw")
    assert "已鎖定" not in row("never@bean.tw")  # the lock has run out
    assert "—" in row("never@bean.tw")  # never signed in
    assert re.search(r"\d{1,2}:\d{2}", row("owner@bean.tw"))  # just signed in


# --- API keys -------------------------------------------------------------------------------

def test_api_key_shown_once_works_then_revoked(client: TestClient, session: Session,
                                               tenant: Tenant, owner: StaffUser) -> None:
    store = make_store(session, tenant, code="A01", name="信義店")
    sign_in(client, owner)
    created = post_form(client, "/admin/api-keys/new",
                        {"name": "信義 POS 1", "scopes": ["pos"], "store_id": store.id})
    assert created.status_code == 201
    html: str = created.text
    match = re.search(r'class="secret"[^>]*>(olk_[A-Za-z0-9_-]+)</div>', html)
    assert match, html
    secret = match.group(1)
    assert "請立即複製這把金鑰，之後將不會再顯示。" in html

    me = client.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200, me.text
    assert me.json()["scopes"] == ["pos"]
    assert me.json()["store_ids"] == [store.id]

    listing = client.get("/admin/api-keys").text
    assert secret not in listing  # shown once, never again
    assert secret[:12] in listing
    assert "信義 POS 1" in listing
    assert "信義店" in listing
    fresh(session)
    key = session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id)).one()
    assert secret not in (key.key_digest, key.key_prefix)

    revoked = post_form(client, "/admin/api-keys", {},
                        action=f"/admin/api-keys/{key.id}/revoke")
    assert revoked.status_code == 303
    assert "已撤銷 API 金鑰。" in client.get(revoked.headers["location"]).text
    refused = client.get("/api/v1/me", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_revoked"
    assert audit_actions(session, tenant)[-2:] == ["api_key.create", "api_key.revoke"]


def test_api_key_form_errors_and_csrf(client: TestClient, session: Session, tenant: Tenant,
                                      owner: StaffUser) -> None:
    sign_in(client, owner)
    no_scope = post_form(client, "/admin/api-keys/new", {"name": "script"})
    assert no_scope.status_code == 422
    assert "請至少選擇一個權限範圍。" in no_scope.text
    bad_store = post_form(client, "/admin/api-keys/new",
                          {"name": "script", "scopes": ["pos"], "store_id": "nope"})
    assert bad_store.status_code == 404
    assert "找不到門市。" in bad_store.text
    forged = client.post("/admin/api-keys/new", data={"name": "x", "scopes": ["admin"],
                                                      "csrf_token": "forged"})
    assert forged.status_code == 403
    fresh(session)
    assert session.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_revoke_needs_csrf(client: TestClient, session: Session, tenant: Tenant,
                           owner: StaffUser) -> None:
    from tests.tenancy.factories import make_api_key

    secret = make_api_key(session, tenant)
    key_id = session.scalars(select(ApiKey.id)).one()
    sign_in(client, owner)
    response = client.post(f"/admin/api-keys/{key_id}/revoke", follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200


# --- audit log ------------------------------------------------------------------------------

def test_audit_page_shows_the_store_creation(client: TestClient, session: Session,
                                            tenant: Tenant, owner: StaffUser) -> None:
    sign_in(client, owner)
    assert post_form(client, "/admin/stores/new",
                     VALID_STORE).status_code == 303
    html = client.get("/admin/audit").text
    start = html.index('data-action="store.create"')
    row = html[start:html.index("</tr>", start)]
    assert "建立門市" in row
    assert "owner@bean.tw" in row
    assert "TPE01" in row
    assert "較舊的紀錄" not in html  # a single page


def test_audit_log_pages_by_100_newest_first(client: TestClient, session: Session,
                                             tenant: Tenant, owner: StaffUser) -> None:
    start = utcnow() - timedelta(days=1)
    actor = system_actor(tenant.id)
    for i in range(130):
        entry = audit.record(session, actor, "test.event", "thing", None, {"n": i})
        entry.at = start + timedelta(seconds=i)
    session.commit()
    sign_in(client, owner)
    first = client.get("/admin/audit").text
    assert first.count("data-action=") == 100
    # the owner's staff.create (made just now) first, then the test entries, newest first
    assert first.index('data-action="staff.create"') < first.index('data-action="test.event"')
    numbers = [int(n) for n in re.findall(r'<span class="k">n</span> (\d+)<', first)]
    assert numbers == list(range(129, 30, -1))
    older = re.search(r'class="button" href="(/admin/audit\?before=[^"]+)"', first)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).text
    numbers = [int(n) for n in re.findall(r'<span class="k">n</span> (\d+)<', second)]
    assert numbers == list(range(30, -1, -1))
    assert "較舊的紀錄" not in second


# --- languages ------------------------------------------------------------------------------

def test_stores_page_in_both_languages(client: TestClient, session: Session, tenant: Tenant,
                                       owner: StaffUser) -> None:
    make_store(session, tenant, code="A01", name="信義店",
               opening_hours={day: [{"open": "08:00", "close": "20:00"}]
                              for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    sign_in(client, owner)
    english = client.get("/admin/stores?lang=en")
    assert english.status_code == 200
    assert 'lang="en"' in english.text
    for text in (">Stores</h1>", "New store", "Open map", "Active", "08:00-20:00", "Audit log"):
        assert text in english.text, text
    assert re.search(r"Today \((Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\)", english.text)
    assert "新增門市" not in english.text
    assert "今日" not in english.text

    chinese = client.get("/admin/stores?lang=zh_TW")
    assert 'lang="zh-Hant-TW"' in chinese.text
    for text in (">門市</h1>", "新增門市", "開啟地圖", "啟用", "稽核紀錄", "今日（星期"):
        assert text in chinese.text, text
    assert "New store" not in chinese.text
    assert "Open map" not in chinese.text
