"""The analytics admin pages through HTTP: each figure shown is the service's figure (which
the service tests recompute from raw rows), clear messages for empty and bad input, CSV
exports, saving snapshots and segments, roles, languages, and Plotly served locally."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from omniloop.analytics import rfm, segments
from omniloop.analytics.clv_report import clv_report
from omniloop.analytics.dashboard import store_dashboard
from omniloop.analytics.pages import PLOTLY_URL
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.money import format_money
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Store, Tenant
from tests.analytics.factories import END, History, make_history
from tests.tenancy.factories import fresh, make_staff, make_tenant
from tests.web.admin_helpers import csrf_from, login


@pytest.fixture
def history(session: Session) -> History:
    return make_history(session, make_tenant(session, slug="beanhouse", name="豆留森林"),
                        customers=40)


def sign_in(client: TestClient, session: Session, tenant: Tenant, role: Role = Role.owner,
            stores_: list[Store] | None = None) -> None:
    member = make_staff(session, tenant, role, stores_)
    assert login(client, member.email, brand=tenant.slug).status_code == 303


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}"><span class="figure[^"]*">([^<]+)</span>', html)
    assert found, f"no figure {name}"
    return unescape(found.group(1))


def rows_of(response: Response) -> list[list[str]]:
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))


def test_dashboard_shows_the_services_figures(client: TestClient, session: Session,
                                              history: History) -> None:
    sign_in(client, session, history.tenant)
    start, end = END - timedelta(days=89), END
    page = client.get(f"/admin/analytics?start={start}&end={end}&lang=en")
    assert page.status_code == 200
    board = store_dashboard(session, system_actor(history.tenant.id), start, end)
    assert figure(page.text, "sales") == format_money(board.sales_minor, "TWD", "en")
    assert figure(page.text, "orders") == f"{board.orders:,}"
    assert figure(page.text, "aov") == format_money(board.average_order_minor or 0, "TWD", "en")
    assert figure(page.text, "new") == f"{board.new_customers:,}"
    assert figure(page.text, "returning") == f"{board.returning_customers:,}"
    # The charts are data for Plotly, served from this server.
    assert f'<script src="{PLOTLY_URL}" defer>' in page.text
    assert "cdn" not in page.text.lower()
    assert 'data-chart="chart-heatmap"' in page.text
    js = client.get(PLOTLY_URL)
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000
    # CSV of the day table adds up to the same figures.
    days = rows_of(client.get(f"/admin/analytics/dashboard.csv?table=days&start={start}"
                              f"&end={end}"))
    assert days[0] == ["date", "orders", "sales"]
    assert sum(int(r[1]) for r in days[1:]) == board.orders
    assert len(days) - 1 == 90


def test_dashboard_explains_empty_and_bad_ranges(client: TestClient, session: Session,
                                                 history: History) -> None:
    sign_in(client, session, history.tenant)
    empty = client.get("/admin/analytics?start=2020-01-01&end=2020-01-31&lang=en")
    assert empty.status_code == 200
    assert "No orders between 2020-01-01 and 2020-01-31" in empty.text
    assert "data-chart" not in empty.text
    backwards = client.get(f"/admin/analytics?start={END}&end={END - timedelta(days=3)}"
                           "&lang=en")
    assert backwards.status_code == 422
    assert "Choose a start date on or before the end date" in unescape(backwards.text)
    garbled = client.get("/admin/analytics?start=yesterday&lang=en")
    assert garbled.status_code == 422
    assert "Enter dates like 2026-11-01" in garbled.text


def test_a_brand_without_orders_gets_a_message_on_every_page(client: TestClient,
                                                            session: Session) -> None:
    tenant = make_tenant(session)
    sign_in(client, session, tenant)
    board = client.get("/admin/analytics?lang=en")
    assert board.status_code == 200
    assert "No orders yet" in board.text
    scores = client.get("/admin/analytics/rfm?lang=en")
    assert "nothing to score yet" in scores.text
    value = client.get("/admin/analytics/clv?lang=en")
    assert value.status_code == 200
    assert "cannot be estimated yet" in value.text
    assert "data-chart" not in board.text + scores.text + value.text
    lift = client.get("/admin/analytics/campaigns?lang=en")
    assert "No campaigns yet" in lift.text


def test_rfm_page_counts_exports_and_saves(client: TestClient, session: Session,
                                           history: History) -> None:
    sign_in(client, session, history.tenant)
    today = to_local(utcnow(), "Asia/Taipei").date()
    page = client.get("/admin/analytics/rfm?lang=en")
    assert page.status_code == 200
    scores = rfm.score_customers(session, system_actor(history.tenant.id), today)
    counts = scores.segment_counts()
    for key, n in counts.items():
        assert re.search(rf'data-segment="{key}"><td>[^<]+</td><td class="num">{n:,}</td>',
                         page.text), key
    exported = rows_of(client.get(f"/admin/analytics/rfm.csv?as_of={today}"))
    assert len(exported) - 1 == len(scores)
    at_risk = rows_of(client.get(f"/admin/analytics/rfm.csv?as_of={today}&segment=at_risk"))
    assert len(at_risk) - 1 == counts["at_risk"]
    assert all(r[-1] == "at_risk" for r in at_risk[1:])

    # Two snapshots, then the movement table.
    for day in (today - timedelta(days=120), today):
        token = csrf_from(client.get("/admin/analytics/rfm").text)
        done = client.post("/admin/analytics/rfm/snapshots",
                           data={"csrf_token": token, "as_of": day.isoformat()},
                           follow_redirects=False)
        assert done.status_code == 303
    moved = client.get("/admin/analytics/rfm?lang=en")
    assert "changed segment from" in moved.text
    assert 'data-from="loyal"' in moved.text
    fresh(session)
    snaps = segments.list_snapshots(session, system_actor(history.tenant.id))
    movement = segments.movement(session, system_actor(history.tenant.id), snaps[1].id,
                                 snaps[0].id)
    matrix = rows_of(client.get(f"/admin/analytics/rfm/movement.csv?before={snaps[1].id}"
                                f"&after={snaps[0].id}"))
    assert {(a, b): int(n) for a, b, n in matrix[1:]} == {
        (a or "not_scored", b or "not_scored"): n for (a, b), n in movement.counts.items()}

    # A saved segment, with its CSV.
    groups = [k for k, n in counts.items() if n][:2]
    token = csrf_from(moved.text)
    saved = client.post("/admin/analytics/segments",
                        data={"csrf_token": token, "name": "回流名單", "groups": groups,
                              "as_of": today.isoformat()}, follow_redirects=False)
    assert saved.status_code == 303
    fresh(session)
    segment = segments.list_segments(session, system_actor(history.tenant.id))[0]
    members = rows_of(client.get(f"/admin/analytics/segments/{segment.id}.csv"))
    assert [r[0] for r in members[1:]] == segments.segment_customer_ids(
        session, system_actor(history.tenant.id), segment.id)
    assert len(members) - 1 == sum(counts[g] for g in groups)
    # Nameless: refused on the page, nothing saved.
    token = csrf_from(client.get("/admin/analytics/rfm").text)
    refused = client.post("/admin/analytics/segments",
                          data={"csrf_token": token, "name": " ", "groups": groups,
                                "as_of": today.isoformat(), "lang": "en"})
    assert refused.status_code == 422
    assert "Name the segment" in refused.text
    fresh(session)
    assert len(segments.list_segments(session, system_actor(history.tenant.id))) == 1


def test_clv_page_shows_the_models_figures(client: TestClient, session: Session,
                                           history: History) -> None:
    sign_in(client, session, history.tenant)
    page = client.get(f"/admin/analytics/clv?as_of={END}&lang=en")
    assert page.status_code == 200
    report = clv_report(session, system_actor(history.tenant.id), END)
    assert figure(page.text, "customers") == f"{len(report.customers):,}"
    assert figure(page.text, "clv365") == format_money(report.total_clv_365_minor, "TWD", "en")
    assert figure(page.text, "purchases365") == f"{report.expected_purchases_365:,.0f}"
    exported = rows_of(client.get(f"/admin/analytics/clv.csv?as_of={END}"))
    assert [r[0] for r in exported[1:]] == [c.customer_id for c in report.customers]
    future = client.get(f"/admin/analytics/clv?as_of={date.today() + timedelta(days=400)}"
                        "&lang=en")
    assert future.status_code == 422
    assert "Choose a date up to today" in future.text


def test_lift_page_names_a_verdict(client: TestClient, session: Session) -> None:
    from tests.campaigns.factories import make_campaign

    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant, holdout_share_bp=1000)
    sign_in(client, session, tenant)
    listing = client.get("/admin/analytics/campaigns")
    assert f"/admin/analytics/campaigns/{campaign.id}" in listing.text
    page = client.get(f"/admin/analytics/campaigns/{campaign.id}?lang=en")
    assert page.status_code == 200
    assert 'data-verdict="no_holdout"' in page.text
    assert figure(page.text, "claimed") == "0"
    other = make_tenant(session)
    sign_in(client, session, other)
    assert client.get(f"/admin/analytics/campaigns/{campaign.id}").status_code == 404


def test_roles(client: TestClient, session: Session, history: History) -> None:
    sign_in(client, session, history.tenant, Role.cashier, [history.stores[0]])
    assert client.get("/admin/analytics").status_code == 403
    client.cookies.clear()
    sign_in(client, session, history.tenant, Role.store_manager, [history.stores[0]])
    assert client.get("/admin/analytics").status_code == 200
    assert client.get("/admin/analytics/rfm").status_code == 403
    assert client.get("/admin/analytics/clv").status_code == 403


def test_pages_speak_zh_tw_by_default(client: TestClient, session: Session,
                                      history: History) -> None:
    sign_in(client, session, history.tenant)
    page = client.get("/admin/analytics")
    assert "門市儀表板" in page.text
    assert "頂級顧客" in client.get("/admin/analytics/rfm").text


def test_csv_exports_refuse_bad_dates_with_a_code(client: TestClient, session: Session,
                                                  history: History) -> None:
    sign_in(client, session, history.tenant)
    answer = client.get("/admin/analytics/rfm.csv?as_of=31/12/2026&lang=en")
    assert answer.status_code == 422
    assert "Enter a date like 2026-11-01, up to today." in answer.text
    backwards = client.get(f"/admin/analytics/dashboard.csv?start={END}"
                           f"&end={END - timedelta(days=1)}&lang=en")
    assert backwards.status_code == 422
