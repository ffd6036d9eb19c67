from fastapi.testclient import TestClient

from omniloop.core.db import Session
from tests.tenancy.factories import bearer, make_api_key, make_store, make_tenant


def test_health_reports_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_store_listing_with_key(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="A01")
    key = make_api_key(session, tenant)
    response = client.get("/api/v1/stores", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert [s["code"] for s in response.json()] == ["A01"]
