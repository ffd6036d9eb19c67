"""The admin import pages: upload, a background job with live progress, the error report."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.customers import identify as identify_module
from omniloop.imports import jobs
from omniloop.imports.models import ImportJob, ImportStatus
from omniloop.tenancy.models import Role, Store, Tenant
from tests.imports.factories import DATA, csv_file, live_customers, table_counts
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login

BAD = csv_file("姓名,手機,生日,備註", "林小美,0912-345-678,80/03/08,x", "壞手機,12345,,",
               "王大明,0922333444,1990/13/01,", bom=True)


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林咖啡")


@pytest.fixture
def store(session: Session, tenant: Tenant) -> Store:
    return make_store(session, tenant, code="TPE01", name="信義店")


@pytest.fixture
def owner(client: TestClient, session: Session, tenant: Tenant) -> TestClient:
    make_staff(session, tenant, Role.owner, email="owner@bean.tw")
    assert login(client, "owner@bean.tw").status_code == 303
    return client


def upload(client: TestClient, data: bytes, *, kind: str = "customers", skip: bool = False,
           name: str = "會員名單.csv") -> str:
    """Post the form; the id of the job it started."""
    form = client.get("/admin/imports")
    assert form.status_code == 200, form.text
    fields = {"csrf_token": csrf_from(form.text), "kind": kind}
    if skip:
        fields["skip_bad_rows"] = "on"
    posted = client.post("/admin/imports", data=fields,
                         files={"file": (name, data, "text/csv")}, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    location = posted.headers["location"]
    assert location.startswith("/admin/imports/")
    return location.rsplit("/", 1)[-1]


def wait_until_finished(client: TestClient, job_id: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state: dict[str, Any] = client.get(f"/admin/imports/{job_id}/status").json()
        if state["finished"]:
            return state
        assert time.monotonic() < deadline, f"import still {state} after {seconds} s"
        time.sleep(0.05)


def test_a_bad_file_is_rejected_and_the_page_lists_its_errors(
        owner: TestClient, session: Session, tenant: Tenant) -> None:
    job_id = upload(owner, BAD)
    state = wait_until_finished(owner, job_id)
    assert (state["status"], state["percent"]) == ("rejected", 100)
    assert state["counts"] == {"rows": 3, "created": 0, "updated": 0, "merged": 0,
                               "skipped": 0, "errors": 2}
    page = owner.get(f"/admin/imports/{job_id}")
    assert page.status_code == 200
    assert "沒有匯入任何資料：檔案有錯誤" in page.text
    assert 'http-equiv="refresh"' not in page.text
    assert '<tr data-row="3">' in page.text
    assert "「12345」不是有效的 phone 識別資料。" in page.text
    assert "「1990/13/01」不是日期" in page.text
    assert "<code>備註</code>" in page.text
    report = owner.get(f"/admin/imports/{job_id}/errors.csv")
    assert report.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''%E6%9C%83%E5%93%A1%E5%90%8D%E5%96%AE-errors.csv" in (
        report.headers["content-disposition"])
    rows = list(csv.reader(report.content.decode("utf-8-sig").splitlines()))
    assert [row[:2] for row in rows] == [["row", "column"], ["3", "手機"], ["4", "生日"]]
    assert live_customers(session) == []
    assert not jobs.upload_path(tenant.id, job_id).exists()  # personal data: not kept


def test_skip_bad_rows_imports_the_good_rows(owner: TestClient, session: Session) -> None:
    job_id = upload(owner, BAD, skip=True)
    state = wait_until_finished(owner, job_id)
    assert state["status"] == "done"
    assert state["counts"]["created"] == 1
    page = owner.get(f"/admin/imports/{job_id}", params={"lang": "en"}).text
    assert "Imported. The rows with errors below were skipped." in page
    assert '<div class="card bad" data-count="skipped">' in page
    assert [c.name for c in live_customers(session)] == ["林小美"]
    listing = owner.get("/admin/imports", params={"lang": "en"}).text
    assert f'<tr data-job="{job_id}">' in listing
    assert "會員名單.csv" in listing


def test_orders_upload_and_reupload(owner: TestClient, session: Session, store: Store) -> None:
    data = (DATA / "orders_utf8_bom.csv").read_bytes()
    first = wait_until_finished(owner, upload(owner, data, kind="orders", name="sales.csv"))
    assert (first["status"], first["counts"]["created"]) == ("done", 4)
    counts = table_counts(session)
    again = wait_until_finished(owner, upload(owner, data, kind="orders", name="sales.csv"))
    assert (again["counts"]["created"], again["counts"]["unchanged"]) == (0, 4)
    assert table_counts(session) == {**counts, "audit": counts["audit"] + 1}


def test_a_file_that_cannot_be_read_says_why(owner: TestClient) -> None:
    job_id = upload(owner, b"PK\x03\x04 not really a workbook", name="members.xlsx")
    assert wait_until_finished(owner, job_id)["status"] == "rejected"
    page = owner.get(f"/admin/imports/{job_id}").text
    assert "這是 Excel 活頁簿：請另存為 CSV（UTF-8）後匯入該檔案。" in page


@pytest.fixture
def paused_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event,
                                                                     threading.Event]]:
    """Make the import wait at its 300th customer until released."""
    reached, release = threading.Event(), threading.Event()
    calls = {"n": 0}

    def slow_identify(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 150:
            # Row progress is written at most every 0.5 s; identify is fast enough that the
            # first 300 rows could pass within one interval, leaving nothing in the row.
            time.sleep(0.6)
        if calls["n"] == 300:
            reached.set()
            assert release.wait(30), "the test never released the import"
        return identify_module.identify(*args, **kwargs)

    monkeypatch.setattr("omniloop.imports.customers.identify", slow_identify)
    yield reached, release
    release.set()


def test_progress_shows_while_the_import_runs(
        owner: TestClient, session: Session, database: Database, tenant: Tenant,
        paused_import: tuple[threading.Event, threading.Event]) -> None:
    reached, release = paused_import
    rows = [f"會員{i},09{i:08d}" for i in range(1, 501)]
    job_id = upload(owner, csv_file("姓名,手機", *rows))
    assert reached.wait(30)
    state = owner.get(f"/admin/imports/{job_id}/status").json()
    assert (state["finished"], state["phase"], state["total"]) == (False, "importing", 500)
    assert 200 <= state["processed"] < 300
    assert 50 < state["percent"] < 80
    assert state["text"] == f"匯入中：{state['processed']} / 500 列"
    page = owner.get(f"/admin/imports/{job_id}").text
    assert '<progress id="import-progress" max="100"' in page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert "/admin/imports/" + job_id + "/status" in page
    fresh(session)
    job = session.get_one(ImportJob, (tenant.id, job_id))
    assert job.status is ImportStatus.running
    if database.engine.dialect.name != "sqlite":
        # The row itself moved, in transactions of its own (SQLite: in this process only).
        assert (job.phase, job.processed) == ("importing", state["processed"])
    assert live_customers(session) == []  # the import's transaction has not committed yet
    release.set()
    done = wait_until_finished(owner, job_id)
    assert (done["status"], done["counts"]["created"]) == ("done", 500)


def test_cashiers_and_store_managers_get_403(client: TestClient, session: Session,
                                             tenant: Tenant, store: Store) -> None:
    for role, email in ((Role.cashier, "cashier@bean.tw"), (Role.store_manager, "sm@bean.tw")):
        make_staff(session, tenant, role, stores_=[store], email=email)
        login(client, email)
        assert 'href="/admin/imports"' not in client.get("/admin").text
        assert client.get("/admin/imports").status_code == 403
        token = csrf_from(client.get("/admin").text)
        posted = client.post("/admin/imports", data={"csrf_token": token, "kind": "customers"},
                             files={"file": ("x.csv", b"phone\n0912345678\n", "text/csv")})
        assert posted.status_code == 403
        client.post("/admin/logout", data={"csrf_token": token})
    assert table_counts(session)["customers"] == 0


def test_marketers_import_customers_but_not_orders(client: TestClient, session: Session,
                                                   tenant: Tenant) -> None:
    make_staff(session, tenant, Role.marketer, email="m@bean.tw")
    login(client, "m@bean.tw")
    form = client.get("/admin/imports")
    assert 'href="/admin/imports"' in form.text
    assert 'value="orders"' not in form.text
    posted = client.post("/admin/imports", data={"csrf_token": csrf_from(form.text),
                                                 "kind": "orders"},
                         files={"file": ("o.csv", b"x", "text/csv")})
    assert posted.status_code == 403


def test_form_errors_and_csrf(owner: TestClient, session: Session) -> None:
    form = owner.get("/admin/imports")
    token = csrf_from(form.text)
    missing = owner.post("/admin/imports", data={"csrf_token": token, "kind": "customers"})
    assert missing.status_code == 422
    assert "請選擇要匯入的 CSV 檔案。" in missing.text
    wrong_kind = owner.post("/admin/imports", data={"csrf_token": token, "kind": "coupons"},
                            files={"file": ("x.csv", b"phone\n", "text/csv")})
    assert wrong_kind.status_code == 422
    no_csrf = owner.post("/admin/imports", data={"kind": "customers"},
                         files={"file": ("x.csv", b"phone\n0912345678\n", "text/csv")})
    assert no_csrf.status_code == 403
    assert no_jobs(session)


def no_jobs(session: Session) -> bool:
    fresh(session)
    return session.scalar(select(ImportJob.id)) is None


def test_too_large_upload_is_refused(owner: TestClient, session: Session,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "MAX_UPLOAD_BYTES", 1024 * 1024)
    form = owner.get("/admin/imports")
    posted = owner.post("/admin/imports", data={"csrf_token": csrf_from(form.text),
                                                "kind": "customers"},
                        files={"file": ("big.csv", b"phone\n" + b"0912345678\n" * 100_000,
                                        "text/csv")})
    assert posted.status_code == 422
    assert "檔案大於 1 MB。" in posted.text
    assert no_jobs(session)


def test_another_brands_job_is_not_found(owner: TestClient, client: TestClient,
                                         session: Session) -> None:
    job_id = upload(owner, BAD)
    wait_until_finished(owner, job_id)
    other = make_tenant(session, slug="other")
    make_staff(session, other, Role.owner, email="owner@other.tw")
    assert login(client, "owner@other.tw", brand="other").status_code == 303
    for path in ("", "/status", "/errors.csv"):
        assert client.get(f"/admin/imports/{job_id}{path}").status_code == 404


def test_a_second_import_waits_for_the_first(
        owner: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A is uploaded first but still checking when B starts writing; A then waits its turn
    (on SQLite the writing pass holds the one write lock, so no row of A is written)."""
    a_checking, go_a, b_writing, go_b = (threading.Event() for _ in range(4))
    check, write = jobs._IMPORTERS["customers"]
    identify = identify_module.identify
    checks = {"n": 0}

    def paused_check(*args: Any, **kwargs: Any) -> Any:
        checks["n"] += 1
        if checks["n"] == 1:
            a_checking.set()
            assert go_a.wait(30)
        return check(*args, **kwargs)

    def paused_identify(*args: Any, **kwargs: Any) -> Any:
        if not b_writing.is_set():
            b_writing.set()
            assert go_b.wait(30)
        return identify(*args, **kwargs)

    monkeypatch.setitem(jobs._IMPORTERS, "customers", (paused_check, write))
    monkeypatch.setattr("omniloop.imports.customers.identify", paused_identify)
    try:
        first = upload(owner, csv_file("姓名,手機",
                                       *[f"會員{i},09{i:08d}" for i in range(1, 401)]))
        assert a_checking.wait(30)
        second = upload(owner, csv_file("姓名,手機", "林小美,0922-333-444"), name="one.csv")
        assert b_writing.wait(30)
        go_a.set()
        deadline = time.monotonic() + 30
        while (state := owner.get(f"/admin/imports/{first}/status").json())["phase"] != (
                "waiting"):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert (state["finished"], state["percent"], state["text"]) == (
            False, 50, "檢查完成，等待另一個匯入結束…")
    finally:
        go_a.set()
        go_b.set()
    assert wait_until_finished(owner, second)["counts"]["created"] == 1
    assert wait_until_finished(owner, first)["counts"]["created"] == 400
    assert len(live_customers(session)) == 401
