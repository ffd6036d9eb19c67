"""The loop's API: receipt QR codes for the POS, the report for BI tools."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from omniloop.core.db import Session
from omniloop.loops.models import Placement, Purpose
from tests.loops.factories import make_shop, make_touchpoint
from tests.orders.factories import make_order
from tests.tenancy.factories import bearer, make_api_key, make_tenant


def test_receipt_qr_opens_feedback_for_that_visit(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    pos = bearer(make_api_key(session, shop.tenant, ["pos"]))
    order = make_order(session, shop.tenant, store_id=shop.store.id)
    body = {"order_id": order.id, "staff": "小王"}
    refused = client.post("/api/v1/loops/receipts", json=body, headers=pos)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "no_receipt_touchpoint"
    make_touchpoint(session, shop, Purpose.feedback, placement=Placement.receipt, number=None,
                    target_url="https://maps.example/review")
    first = client.post("/api/v1/loops/receipts", json=body, headers=pos)
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/loops/receipts", json=body, headers=pos)
    assert again.json()["receipt_id"] == first.json()["receipt_id"]
    assert "<svg" in first.json()["qr_svg"]
    url = urlsplit(first.json()["url"])
    page = client.get(f"{url.path}?{url.query}")
    assert page.status_code == 200
    assert "data-receipt" in page.text
    token = parse_qs(url.query)["r"][0]
    # An altered receipt is refused (a signature character changed, whatever it was).
    other = make_tenant(session)
    altered = token[:-10] + ("B" if token[-10] != "B" else "C") + token[-9:]
    assert client.get(f"{url.path}?r={altered}").status_code == 400
    unknown = client.post("/api/v1/loops/receipts", json={"order_id": "0" * 26},
                          headers=bearer(make_api_key(session, other, ["pos"])))
    assert unknown.status_code == 404


def test_report_api_checks_its_range(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    admin = bearer(make_api_key(session, shop.tenant, ["admin"]))
    ok = client.get("/api/v1/loops/report", headers=admin, params={
        "start": "2026-11-01T00:00:00+08:00", "end": "2026-12-01T00:00:00+08:00"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["overall"]["scans"] == 0
    assert ok.json()["overall"]["k"] is None
    assert [s["store_name"] for s in ok.json()["stores"]] == ["信義店"]
    backwards = client.get("/api/v1/loops/report", headers=admin, params={
        "start": "2026-12-01T00:00:00+08:00", "end": "2026-11-01T00:00:00+08:00"})
    assert backwards.status_code == 422
    assert backwards.json()["error"]["code"] == "range_invalid"
    naive = client.get("/api/v1/loops/report", headers=admin, params={
        "start": "2026-11-01T00:00:00", "end": "2026-12-01T00:00:00"})
    assert naive.status_code == 422
