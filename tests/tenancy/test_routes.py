"""The tenancy API: happy paths, tenant isolation and every kind of bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.db import Session
from omniloop.tenancy.models import ApiKey, AuditEntry, StaffUser, Store
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant

HOURS = {"mon": [{"open": "07:30", "close": "21:00"}],
         "sat": [{"open": "09:00", "close": "12:00"}, {"open": "13:00", "close": "22:00"}]}


def store_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": "tpe-xinyi", "name": "信義店",
                            "address": "台北市信義區松仁路 100 號", "latitude": 25.0330,
                            "longitude": 121.5680, "phone": "02-2720-0000",
                            "opening_hours": HOURS}
    body.update(overrides)
    return body


def count(session: Session, model: type) -> int:
    fresh(session)
    return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def admin_key(session: Session) -> str:
    return make_api_key(session, make_tenant(session, slug="beanhouse"))


def test_create_get_update_store(client: TestClient, admin_key: str, session: Session) -> None:
    created = client.post("/api/v1/stores", json=store_body(), headers=bearer(admin_key))
    assert created.status_code == 201, created.text
    store = created.json()
    assert store["code"] == "TPE-XINYI"
    assert store["opening_hours"]["sat"][1] == {"open": "13:00", "close": "22:00"}

    fetched = client.get(f"/api/v1/stores/{store['id']}", headers=bearer(admin_key))
    assert fetched.json()["name"] == "信義店"

    patched = client.patch(f"/api/v1/stores/{store['id']}", json={"phone": "02-1111-2222"},
                           headers=bearer(admin_key))
    assert patched.status_code == 200
    assert patched.json()["phone"] == "02-1111-2222"
    assert patched.json()["name"] == "信義店"

    actions = [e["action"] for e in client.get("/api/v1/audit-log",
                                                headers=bearer(admin_key)).json()]
    assert actions[:2] == ["store.update", "store.create"]
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "store.update")).one()
    assert entry.details == {"phone": ["02-2720-0000", "02-1111-2222"]}
    assert entry.actor_type == "api_key"


def test_whoami_names_tenant_and_scopes(client: TestClient, admin_key: str) -> None:
    me = client.get("/api/v1/me", headers=bearer(admin_key)).json()
    assert me["tenant"]["slug"] == "beanhouse"
    assert me["tenant"]["currency"] == "TWD"
    assert me["tenant"]["timezone"] == "Asia/Taipei"
    assert me["scopes"] == ["admin"]


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "auth_required"),
    ({"Authorization": "Bearer olk_not-a-real-key"}, "invalid_api_key"),
    ({"Authorization": "Bearer something-else"}, "invalid_api_key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "auth_required"),
])
def test_missing_or_wrong_key_is_401(client: TestClient, headers: dict[str, str],
                                     code: str) -> None:
    response = client.get("/api/v1/stores", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_revoked_key_is_401(client: TestClient, admin_key: str) -> None:
    keys = client.get("/api/v1/api-keys", headers=bearer(admin_key)).json()
    other = client.post("/api/v1/api-keys", json={"name": "till 2", "scopes": ["pos"]},
                        headers=bearer(admin_key)).json()
    assert other["key"].startswith("olk_")
    assert client.get("/api/v1/me", headers=bearer(other["key"])).status_code == 200
    revoked = client.post(f"/api/v1/api-keys/{other['id']}/revoke", headers=bearer(admin_key))
    assert revoked.json()["revoked_at"] is not None
    response = client.get("/api/v1/me", headers=bearer(other["key"]))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"
    assert len(keys) == 1  # the listing never contains secrets
    assert "key" not in keys[0]
    assert "key_digest" not in keys[0]


def test_other_tenants_ids_answer_404(client: TestClient, session: Session,
                                      admin_key: str) -> None:
    other = make_tenant(session, slug="rival")
    foreign_store = make_store(session, other, code="R01")
    foreign_key = make_api_key(session, other)
    foreign_staff = client.post("/api/v1/staff", headers=bearer(foreign_key), json={
        "email": "boss@rival.tw", "name": "Boss", "password": "long enough pw", "role": "owner",
    }).json()
    for path in (f"/api/v1/stores/{foreign_store.id}", f"/api/v1/staff/{foreign_staff['id']}"):
        response = client.get(path, headers=bearer(admin_key))
        assert response.status_code == 404, path
    patch = client.patch(f"/api/v1/stores/{foreign_store.id}", json={"name": "hijacked"},
                         headers=bearer(admin_key))
    assert patch.status_code == 404
    revoke = client.post(f"/api/v1/api-keys/{foreign_key}/revoke", headers=bearer(admin_key))
    assert revoke.status_code == 404
    assert client.get("/api/v1/stores", headers=bearer(admin_key)).json() == []
    fresh(session)
    assert session.get(Store, (other.id, foreign_store.id)).name == "信義店"  # type: ignore[union-attr]


def test_store_bound_pos_key_sees_only_its_store(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    mine = make_store(session, tenant, code="A01")
    theirs = make_store(session, tenant, code="A02")
    key = make_api_key(session, tenant, scopes=["pos"], store=mine)
    assert [s["code"] for s in client.get("/api/v1/stores", headers=bearer(key)).json()] == ["A01"]
    assert client.get(f"/api/v1/stores/{theirs.id}", headers=bearer(key)).status_code == 404
    forbidden = client.post("/api/v1/stores", json=store_body(code="A03"), headers=bearer(key))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == {
        "code": "scope_required", "message": "這把 API 金鑰沒有「admin」權限範圍。"}


def test_pos_key_cannot_manage_staff_or_keys(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    key = make_api_key(session, tenant, scopes=["pos"])
    before = count(session, ApiKey)
    response = client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["admin"]},
                           headers=bearer(key) | {"Accept-Language": "en"})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API key lacks the 'admin' scope."
    assert client.get("/api/v1/staff", headers=bearer(key)).status_code == 403
    assert count(session, ApiKey) == before


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (store_body(latitude=91), 422, "validation_error", "latitude"),
    (store_body(longitude=-180.5), 422, "validation_error", "longitude"),
    (store_body(latitude=25.0, longitude=None), 422, "validation_error", "body"),
    (store_body(code="no spaces"), 422, "validation_error", "code"),
    (store_body(name=""), 422, "validation_error", "name"),
    (store_body(opening_hours={"mon": [{"open": "21:00", "close": "07:00"}]}), 422,
     "validation_error", "opening_hours.mon.0"),
    (store_body(opening_hours={"funday": []}), 422, "validation_error", "opening_hours.funday"),
    (store_body(opening_hours={"mon": [{"open": "25:00", "close": "26:00"}]}), 422,
     "validation_error", "opening_hours.mon.0.open"),
    (store_body(colour="teal"), 422, "unknown_field", "colour"),
    ({"name": "no code"}, 422, "validation_error", "code"),
])
def test_bad_store_input_is_rejected_and_nothing_written(
        client: TestClient, admin_key: str, session: Session, body: dict[str, Any], status: int,
        code: str, field: str) -> None:
    response = client.post("/api/v1/stores", json=body,
                           headers=bearer(admin_key) | {"Accept-Language": "en"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert field in [d["field"] for d in error["details"]]
    assert count(session, Store) == 0


def test_malformed_json_is_400(client: TestClient, admin_key: str, session: Session) -> None:
    response = client.post("/api/v1/stores", content=b'{"code": "A1", "name": ',
                           headers=bearer(admin_key) | {"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"] == "請求內容不是有效的 JSON。"
    assert count(session, Store) == 0


def test_duplicate_store_code_is_409(client: TestClient, admin_key: str, session: Session) -> None:
    assert client.post("/api/v1/stores", json=store_body(),
                       headers=bearer(admin_key)).status_code == 201
    again = client.post("/api/v1/stores", json=store_body(code="TPE-xinyi", name="Other"),
                        headers=bearer(admin_key) | {"Accept-Language": "en-US,en;q=0.9"})
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "store_code_taken",
        "message": "Another store already uses the code 'TPE-XINYI'."}
    assert count(session, Store) == 1


def test_patch_that_breaks_coordinates_pair_writes_nothing(
        client: TestClient, admin_key: str, session: Session) -> None:
    store = client.post("/api/v1/stores", json=store_body(), headers=bearer(admin_key)).json()
    response = client.patch(f"/api/v1/stores/{store['id']}",
                            json={"latitude": None, "name": "renamed"}, headers=bearer(admin_key))
    assert response.status_code == 422
    fresh(session)
    row = session.scalars(select(Store)).one()
    assert (row.name, row.latitude) == ("信義店", 25.033)


def test_staff_rules(client: TestClient, admin_key: str, session: Session) -> None:
    cashier = {"email": "Amy@Bean.tw", "name": "Amy", "password": "long enough pw",
               "role": "cashier"}
    no_store = client.post("/api/v1/staff", json=cashier, headers=bearer(admin_key))
    assert no_store.status_code == 400
    assert no_store.json()["error"]["code"] == "stores_required"
    store = client.post("/api/v1/stores", json=store_body(), headers=bearer(admin_key)).json()
    created = client.post("/api/v1/staff", json=cashier | {"store_ids": [store["id"]]},
                          headers=bearer(admin_key))
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "amy@bean.tw"
    assert created.json()["store_ids"] == [store["id"]]
    assert "password" not in created.text
    assert "argon2" not in created.text
    dup = client.post("/api/v1/staff", json=cashier | {"store_ids": [store["id"]]},
                      headers=bearer(admin_key))
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "staff_email_taken"
    short = client.post("/api/v1/staff", json=cashier | {"email": "b@bean.tw",
                                                         "password": "short"},
                        headers=bearer(admin_key))
    assert short.status_code == 422
    bad_role = client.post("/api/v1/staff", json=cashier | {"email": "c@bean.tw",
                                                            "role": "ceo"},
                           headers=bearer(admin_key))
    assert bad_role.status_code == 422
    assert count(session, StaffUser) == 1


def test_last_owner_cannot_be_demoted(client: TestClient, admin_key: str) -> None:
    owner = client.post("/api/v1/staff", headers=bearer(admin_key), json={
        "email": "o@bean.tw", "name": "O", "password": "long enough pw", "role": "owner"}).json()
    response = client.patch(f"/api/v1/staff/{owner['id']}", json={"role": "marketer"},
                            headers=bearer(admin_key))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    deactivate = client.patch(f"/api/v1/staff/{owner['id']}", json={"active": False},
                              headers=bearer(admin_key))
    assert deactivate.status_code == 409


def test_unknown_path_and_method(client: TestClient, admin_key: str) -> None:
    missing = client.get("/api/v1/nothing-here", headers=bearer(admin_key))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/api/v1/stores", headers=bearer(admin_key))
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_openapi_is_served_with_readable_operation_ids(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    operation_ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"stores-create", "stores-list", "api-keys-revoke", "auth-whoami"} <= operation_ids
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "/api/v1/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/api/v1/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_last_used_is_recorded(client: TestClient, admin_key: str, session: Session) -> None:
    assert session.scalars(select(ApiKey)).one().last_used_at is None
    client.get("/api/v1/me", headers=bearer(admin_key))
    fresh(session)
    assert session.scalars(select(ApiKey)).one().last_used_at is not None


@pytest.mark.parametrize("field", ["name", "address", "phone", "opening_hours", "active"])
def test_patch_null_for_required_field_is_422(client: TestClient, admin_key: str,
                                              session: Session, field: str) -> None:
    store = client.post("/api/v1/stores", json=store_body(), headers=bearer(admin_key)).json()
    response = client.patch(f"/api/v1/stores/{store['id']}", json={field: None},
                            headers=bearer(admin_key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    fresh(session)
    assert session.scalars(select(Store)).one().name == "信義店"


def test_patch_staff_null_is_422(client: TestClient, admin_key: str) -> None:
    owner = client.post("/api/v1/staff", headers=bearer(admin_key), json={
        "email": "o@bean.tw", "name": "O", "password": "long enough pw", "role": "owner"}).json()
    for field in ("name", "role", "active", "store_ids", "password"):
        response = client.patch(f"/api/v1/staff/{owner['id']}", json={field: None},
                                headers=bearer(admin_key))
        assert response.status_code == 422, (field, response.text)


def test_audit_paging_keeps_entries_that_share_a_timestamp(
        client: TestClient, admin_key: str, session: Session) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import update

    for code in ("A1", "A2", "A3", "A4", "A5"):
        client.post("/api/v1/stores", json=store_body(code=code), headers=bearer(admin_key))
    same_moment = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    session.execute(update(AuditEntry).values(at=same_moment))
    session.commit()
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = client.get("/api/v1/audit-log", params=params, headers=bearer(admin_key)).json()
        if not page:
            break
        seen += [e["id"] for e in page]
        params = {"limit": "2", "before": page[-1]["at"], "before_id": page[-1]["id"]}
    assert len(seen) == len(set(seen)) == count(session, AuditEntry) == 6  # 5 stores + the key


def test_validation_messages_name_the_field(client: TestClient, admin_key: str) -> None:
    bad = client.post("/api/v1/stores", json=store_body(latitude=91),
                      headers=bearer(admin_key) | {"Accept-Language": "en"})
    assert bad.json()["error"]["message"] == "Invalid value for 'latitude'."
    assert bad.json()["error"]["field"] == "latitude"
    unknown = client.post("/api/v1/stores", json=store_body(colour="teal"),
                          headers=bearer(admin_key))
    assert unknown.json()["error"]["message"] == "不認得的欄位：colour。"
    assert "{" not in bad.json()["error"]["message"] + unknown.json()["error"]["message"]
