"""Code batches, CSV import and export through the API and the admin page: small batches at
once, large ones in the background with their progress visible while they run, refusals
with stable codes, audit entries, roles."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.campaigns import batches
from omniloop.campaigns.models import BatchStatus, Campaign, CodeBatch, Coupon
from omniloop.campaigns.service import end_campaign
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Role, Tenant
from tests.campaigns.factories import make_campaign
from tests.tenancy.factories import (
    bearer,
    fresh,
    make_api_key,
    make_staff,
    make_store,
    make_tenant,
)
from tests.web.admin_helpers import csrf_from, login


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林")


@pytest.fixture
def admin_key(session: Session, tenant: Tenant) -> dict[str, str]:
    return bearer(make_api_key(session, tenant, scopes=["admin"]))


@pytest.fixture
def campaign(session: Session, tenant: Tenant) -> Campaign:
    return make_campaign(session, tenant)


def code_count(session: Session, tenant: Tenant, campaign: Campaign) -> int:
    fresh(session)
    return int(session.scalar(select(func.count()).select_from(Coupon).where(
        Coupon.tenant_id == tenant.id, Coupon.campaign_id == campaign.id)) or 0)


def wait_for(client: TestClient, headers: dict[str, str], batch_id: str,
             seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state: dict[str, Any] = client.get(f"/api/v1/code-batches/{batch_id}",
                                           headers=headers).json()
        if state["status"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, f"batch still {state} after {seconds} s"
        time.sleep(0.05)


@pytest.fixture
def paused_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event,
                                                                     threading.Event]]:
    """Background batches of 1,000-code chunks that stop after their second chunk until
    `release` is set; `reached` says they got there."""
    reached, release = threading.Event(), threading.Event()
    real = batches._store_chunk
    calls = 0

    def store(database: Database, batch: CodeBatch, codes: list[str]) -> int:
        nonlocal calls
        stored = real(database, batch, codes)
        calls += 1
        if calls == 2:
            reached.set()
            assert release.wait(60)
        return stored

    monkeypatch.setattr(batches, "INLINE_LIMIT", 100)
    monkeypatch.setattr(batches, "CHUNK_SIZE", 1000)
    monkeypatch.setattr(batches, "_store_chunk", store)
    yield reached, release
    release.set()


# --- API ----------------------------------------------------------------------------------


def test_a_small_batch_is_made_at_once(client: TestClient, session: Session, tenant: Tenant,
                                       admin_key: dict[str, str], campaign: Campaign) -> None:
    response = client.post(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key,
                           json={"pattern": "cafe-####-####", "count": 250})
    assert response.status_code == 201, response.text
    batch = response.json()
    assert response.headers["location"] == f"/api/v1/code-batches/{batch['id']}"
    assert {k: batch[k] for k in ("source", "pattern", "requested", "created_count", "status",
                                  "percent", "stalled", "error")} == {
        "source": "generated", "pattern": "CAFE-####-####", "requested": 250,
        "created_count": 250, "status": "done", "percent": 100, "stalled": False,
        "error": None}
    assert client.get(f"/api/v1/code-batches/{batch['id']}", headers=admin_key).json() == batch
    listed = client.get(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key)
    assert [b["id"] for b in listed.json()] == [batch["id"]]
    assert code_count(session, tenant, campaign) == 250
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "campaign.codes_generate")).one()
    assert (entry.entity_id, entry.details) == (campaign.id, {
        "batch_id": batch["id"], "pattern": "CAFE-####-####", "count": 250})


def test_a_large_batch_runs_in_the_background_with_its_progress_visible(
        client: TestClient, session: Session, database: Database, tenant: Tenant,
        admin_key: dict[str, str], campaign: Campaign,
        paused_worker: tuple[threading.Event, threading.Event]) -> None:
    reached, release = paused_worker
    response = client.post(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key,
                           json={"pattern": "CAFE-####-####", "count": 5000})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    batch_id = response.json()["id"]
    assert reached.wait(30)
    running = client.get(f"/api/v1/code-batches/{batch_id}", headers=admin_key).json()
    assert (running["status"], running["created_count"], running["percent"]) == (
        "running", 2000, 40)
    assert running["stalled"] is False
    # The two chunks are committed, each with its count: other readers see them too.
    assert code_count(session, tenant, campaign) == 2000
    # …and other writers are not held up meanwhile.
    other = client.post("/api/v1/campaigns", headers=admin_key,
                        json={"name": "另一個活動", "kind": "gift", "gift_name": "貼紙",
                              "starts_at": utcnow().isoformat()})
    assert other.status_code == 201, other.text
    release.set()
    done = wait_for(client, admin_key, batch_id)
    assert (done["status"], done["created_count"], done["percent"]) == ("done", 5000, 100)
    assert done["finished_at"] is not None
    assert code_count(session, tenant, campaign) == 5000
    codes = set(session.scalars(select(Coupon.code).where(Coupon.batch_id == batch_id)))
    assert len(codes) == 5000


def test_an_interrupted_batch_says_so(client: TestClient, session: Session,
                                      database: Database, tenant: Tenant,
                                      admin_key: dict[str, str], campaign: Campaign) -> None:
    with database.unit_of_work() as s:
        batch = batches.create_batch(s, system_actor(tenant.id), campaign.id,
                                     "CAFE-####-####", 20_000)
        batch.created_at = utcnow() - timedelta(hours=1)
        batch.status = BatchStatus.running
        batch.created_count = 7000
    state = client.get(f"/api/v1/code-batches/{batch.id}", headers=admin_key).json()
    assert (state["stalled"], state["error"], state["percent"]) == (True, "interrupted", 35)
    assert "7,000" in state["error_message"]


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"pattern": "CAFE-####", "count": 1000}, 422, "code_pattern_too_small", "pattern"),
    ({"pattern": "CAFE-###", "count": 10}, 422, "campaign_invalid", "pattern"),
    ({"pattern": "CAFE-####", "count": 0}, 422, "validation_error", "count"),
    ({"pattern": "CAFE-####", "count": "10"}, 422, "validation_error", "count"),
    ({"pattern": "CAFE-####", "count": 10, "prefix": "X"}, 422, "unknown_field", "prefix"),
])
def test_bad_requests_are_refused_with_stable_codes(
        client: TestClient, admin_key: dict[str, str], campaign: Campaign, body: dict[str, Any],
        status: int, code: str, field: str) -> None:
    response = client.post(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key,
                           json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)


def test_refusals_for_campaigns_keys_and_other_brands(
        client: TestClient, session: Session, database: Database, tenant: Tenant,
        admin_key: dict[str, str], campaign: Campaign) -> None:
    body = {"pattern": "CAFE-######", "count": 10}
    shared = make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    ended = make_campaign(session, tenant)
    with database.unit_of_work() as s:
        end_campaign(s, system_actor(tenant.id), ended.id)
    cases = [(shared.id, admin_key, 409, "campaign_code_mode_shared"),
             (ended.id, admin_key, 409, "campaign_ended"),
             ("01NOSUCHCAMPAIGN0000000000", admin_key, 404, "campaign_not_found"),
             (campaign.id, bearer(make_api_key(session, tenant, scopes=["pos"])), 403,
              "scope_required")]
    for campaign_id, headers, status, code in cases:
        response = client.post(f"/api/v1/campaigns/{campaign_id}/code-batches",
                               headers=headers, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    made = client.post(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key,
                       json=body).json()
    other = bearer(make_api_key(session, make_tenant(session), scopes=["admin"]))
    for path in (f"/api/v1/code-batches/{made['id']}",
                 f"/api/v1/campaigns/{campaign.id}/code-batches",
                 f"/api/v1/campaigns/{campaign.id}/codes.csv"):
        response = client.get(path, headers=other)
        assert response.status_code == 404, path
    missing = client.get("/api/v1/code-batches/01NOSUCHBATCH0000000000000", headers=admin_key)
    assert missing.json()["error"]["code"] == "code_batch_not_found"
    assert client.post(f"/api/v1/campaigns/{shared.id}/codes/import", headers=admin_key,
                       content=b"GIFT-0001\n").json()["error"]["code"] == (
        "campaign_code_mode_shared")


def test_import_through_the_api_as_csv_or_a_form_file(
        client: TestClient, session: Session, tenant: Tenant, admin_key: dict[str, str],
        campaign: Campaign) -> None:
    path = f"/api/v1/campaigns/{campaign.id}/codes/import"
    plain = client.post(path, headers={**admin_key, "Content-Type": "text/csv"},
                        content=b"code\nGIFT-0001\nGIFT-0002\n")
    assert plain.status_code == 201, plain.text
    assert (plain.json()["source"], plain.json()["created_count"]) == ("imported", 2)
    form = client.post(path, headers=admin_key,
                       files={"file": ("codes.csv", b"GIFT-0003\r\n", "text/csv")})
    assert form.status_code == 201, form.text
    bad = client.post(path, headers={**admin_key, "Accept-Language": "zh-TW"},
                      content=b"GIFT-0004\ngift-0001\nGIFT-0004\n")
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "code_file_invalid"
    assert [(d["row"], d["code"]) for d in error["details"]] == [(2, "GIFT-0001"),
                                                                  (3, "GIFT-0004")]
    assert all(d["reason"] for d in error["details"])
    assert code_count(session, tenant, campaign) == 3
    empty = client.post(path, headers=admin_key, content=b"")
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "code_file_missing")


def test_export_through_the_api_is_audited(client: TestClient, session: Session,
                                           tenant: Tenant, admin_key: dict[str, str],
                                           campaign: Campaign) -> None:
    client.post(f"/api/v1/campaigns/{campaign.id}/code-batches", headers=admin_key,
                json={"pattern": "CAFE-####-####", "count": 40})
    response = client.get(f"/api/v1/campaigns/{campaign.id}/codes.csv", headers=admin_key)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["code", "status", "customer_id", "claimed_at", "redeemed_at"]
    assert len(rows) == 41
    assert all(r[1] == "available" for r in rows[1:])
    fresh(session)
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "campaign.codes_export")).one()
    assert (entry.entity_id, entry.details, entry.actor_type) == (campaign.id, {"rows": 40},
                                                                  "api_key")
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    assert client.get(f"/api/v1/campaigns/{campaign.id}/codes.csv",
                      headers=pos).status_code == 403


# --- the admin page --------------------------------------------------------------------


@pytest.fixture
def owner(client: TestClient, session: Session, tenant: Tenant) -> TestClient:
    member = make_staff(session, tenant, Role.owner)
    assert login(client, member.email, brand=tenant.slug).status_code == 303
    return client


def post_page(client: TestClient, page: str, action: str, data: dict[str, str],
              files: dict[str, Any] | None = None) -> Any:
    token = csrf_from(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **data}, files=files,
                       follow_redirects=False)


def test_the_page_generates_checks_capacity_and_reports_problems(
        owner: TestClient, session: Session, tenant: Tenant, campaign: Campaign) -> None:
    page = f"/admin/campaigns/{campaign.id}/codes"
    shown = owner.get(page)
    assert shown.status_code == 200
    assert 'id="generate-form"' in shown.text
    assert 'id="import-form"' in shown.text
    checked = owner.get(page, params={"pattern": "CAFE-####", "count": "1,000"})
    assert "810,000" in checked.text
    assert 'class="notice error" id="code-capacity"' in checked.text
    live = owner.get(page + "/capacity", params={"pattern": "CAFE-####", "count": "800"}).json()
    assert live["ok"] is True
    assert "810" in live["text"]

    refused = post_page(owner, page, page + "/generate", {"pattern": "CAFE-####",
                                                          "count": "1000"})
    assert refused.status_code == 422
    assert 'id="error-pattern"' in refused.text
    assert "810,000" in refused.text
    not_a_number = post_page(owner, page, page + "/generate", {"pattern": "CAFE-######",
                                                               "count": "many"})
    assert not_a_number.status_code == 422
    assert 'id="error-count"' in not_a_number.text

    made = post_page(owner, page, page + "/generate", {"pattern": "CAFE-######",
                                                       "count": "1,200"})
    assert made.status_code == 303
    after = owner.get(made.headers["location"])
    assert "代碼已產生" in after.text  # zh-TW by default
    assert after.text.count('data-batch="') == 1
    assert "1,200" in after.text
    assert code_count(session, tenant, campaign) == 1200

    bad = post_page(owner, page, page + "/import", {},
                    files={"file": ("codes.csv", b"GIFT-0001\nGIFT-0001\n", "text/csv")})
    assert bad.status_code == 422
    assert 'data-row="2"' in bad.text
    assert "第 1 列" in bad.text
    workbook = post_page(owner, page, page + "/import", {},
                         files={"file": ("codes.xlsx", b"PK\x03\x04", "application/zip")})
    assert workbook.status_code == 422
    assert 'id="error-file"' in workbook.text
    good = post_page(owner, page, page + "/import", {},
                     files={"file": ("codes.csv", b"GIFT-0001\nGIFT-0002\n", "text/csv")})
    assert good.status_code == 303
    assert code_count(session, tenant, campaign) == 1202

    export = owner.get(page.replace("/codes", "/codes.csv"))
    assert export.status_code == 200
    assert export.text.count("\r\n") == 1203
    fresh(session)
    actions = set(session.scalars(select(AuditEntry.action).where(
        AuditEntry.action.like("campaign.codes_%"))))
    assert actions == {"campaign.codes_generate", "campaign.codes_import",
                       "campaign.codes_export"}


def test_the_page_follows_a_running_batch(
        owner: TestClient, session: Session, tenant: Tenant, campaign: Campaign,
        paused_worker: tuple[threading.Event, threading.Event]) -> None:
    reached, release = paused_worker
    page = f"/admin/campaigns/{campaign.id}/codes"
    made = post_page(owner, page, page + "/generate", {"pattern": "CAFE-####-####",
                                                       "count": "3000"})
    assert made.status_code == 303
    assert reached.wait(30)
    running = owner.get(page)
    assert '<progress max="100" value="66"' in running.text
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in running.text
    state = owner.get(page + "/status").json()
    assert state["running"] is True
    assert state["batches"][0]["text"] == "已產生 2,000 / 3,000 組代碼"
    release.set()
    deadline = time.monotonic() + 30
    while owner.get(page + "/status").json()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "<progress" not in owner.get(page).text
    assert code_count(session, tenant, campaign) == 3000


def test_roles_and_shared_campaigns_on_the_page(client: TestClient, session: Session,
                                                tenant: Tenant, campaign: Campaign) -> None:
    store = make_store(session, tenant, code="TPE01")
    manager = make_staff(session, tenant, Role.store_manager, [store])
    assert login(client, manager.email, brand=tenant.slug).status_code == 303
    page = client.get(f"/admin/campaigns/{campaign.id}/codes")
    assert page.status_code == 200
    assert 'id="generate-form"' not in page.text
    assert 'id="codes-export"' in page.text
    assert client.get(f"/admin/campaigns/{campaign.id}/codes.csv").status_code == 200
    shared = make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    assert "SPRING100" in client.get(f"/admin/campaigns/{shared.id}/codes").text
    cashier = make_staff(session, tenant, Role.cashier, [store])
    client.cookies.clear()
    assert login(client, cashier.email, brand=tenant.slug).status_code == 303
    assert client.get(f"/admin/campaigns/{campaign.id}/codes").status_code == 403
