"""Admin customer search and the 360 page."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.identify import identify
from omniloop.customers.models import CustomerMerge, IdentityKind
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login


def person(session: Session, tenant: Tenant, name: str, *identities: tuple[str, str]) -> str:
    result = identify(session, system_actor(tenant.id),
                      [IdentityIn(kind=IdentityKind(k), value=v) for k, v in identities],
                      Traits(name=name))
    session.commit()
    return result.customer.id


def test_search_by_phone_in_any_format_email_card_and_name(
        client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    amy = person(session, tenant, "林小美", ("phone", "0912-345-678"), ("email", "amy@bean.tw"))
    bob = person(session, tenant, "王大明", ("pos_card", "CARD-77"))
    login(client, "owner@bean.tw")
    for query in ("+886912345678", "0912345678", "0912 345 678", "AMY@bean.tw", "小美"):
        page = client.get("/admin/customers", params={"q": query})
        assert f"/admin/customers/{amy}" in page.text, query
        assert f"/admin/customers/{bob}" not in page.text, query
    assert f"/admin/customers/{bob}" in client.get("/admin/customers?q=CARD-77").text
    assert "沒有符合" in client.get("/admin/customers?q=nobody-here").text
    listing = client.get("/admin/customers").text
    assert amy in listing
    assert bob in listing


def test_360_page_shows_identities_merges_and_undo(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    older = person(session, tenant, "陳大文", ("pos_card", "CARD-1"))
    newer = person(session, tenant, "David", ("line", "U" + "b2" * 16))
    person(session, tenant, "陳大文", ("pos_card", "CARD-1"), ("line", "U" + "b2" * 16))
    login(client, "owner@bean.tw")
    moved = client.get(f"/admin/customers/{newer}", follow_redirects=False)
    assert moved.headers["location"] == f"/admin/customers/{older}"
    page = client.get(f"/admin/customers/{older}")
    assert "CARD-1" in page.text
    assert "Ub2b2" in page.text
    assert "David 已合併至 陳大文" in page.text
    fresh(session)
    merge_id = session.scalars(select(CustomerMerge.id)).one()
    undone = client.post(f"/admin/customers/merges/{merge_id}/undo",
                         data={"csrf_token": csrf_from(page.text)}, follow_redirects=True)
    assert undone.status_code == 200
    assert "已復原合併" in undone.text
    assert client.get(f"/admin/customers/{newer}", follow_redirects=False).status_code == 200


def test_cashier_can_look_up_but_not_undo(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    store = make_store(session, tenant)
    make_staff(session, tenant, role=Role.cashier, stores_=[store], email="c@bean.tw")
    older = person(session, tenant, "A", ("pos_card", "C-1"))
    person(session, tenant, "B", ("pos_card", "C-2"))
    person(session, tenant, "A", ("pos_card", "C-1"), ("pos_card", "C-2"))
    login(client, "c@bean.tw")
    page = client.get(f"/admin/customers/{older}")
    assert page.status_code == 200
    assert "/undo" not in page.text
    fresh(session)
    merge_id = session.scalars(select(CustomerMerge.id)).one()
    refused = client.post(f"/admin/customers/merges/{merge_id}/undo",
                          data={"csrf_token": csrf_from(page.text)})
    assert refused.status_code == 403
    fresh(session)
    assert session.scalars(select(CustomerMerge.undone_at)).one() is None


def test_other_tenants_customer_page_is_404(client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    theirs = person(session, make_tenant(session), "X", ("phone", "0912345678"))
    assert login(client, "owner@bean.tw", brand=tenant.slug).status_code == 303
    assert client.get(f"/admin/customers/{theirs}").status_code == 404


def test_timeline_shows_events_of_merged_profiles(client: TestClient, session: Session) -> None:
    from datetime import UTC, datetime

    from omniloop.customers.events import record_event

    tenant = make_tenant(session)
    make_staff(session, tenant, email="owner@bean.tw")
    older = person(session, tenant, "A", ("pos_card", "C-1"))
    newer = person(session, tenant, "A", ("device", "web-1"))
    actor = system_actor(tenant.id)
    record_event(session, actor, client_event_id="e1", type="qr_scan", channel="offline",
                 customer_id=older, occurred_at=datetime(2026, 11, 1, 2, tzinfo=UTC))
    record_event(session, actor, client_event_id="e2", type="page_view", channel="online",
                 customer_id=newer, occurred_at=datetime(2026, 11, 2, 2, tzinfo=UTC))
    record_event(session, actor, client_event_id="e3", type="tasting_night", channel="offline",
                 customer_id=newer, occurred_at=datetime(2026, 11, 3, 2, tzinfo=UTC))
    session.commit()
    person(session, tenant, "A", ("pos_card", "C-1"), ("device", "web-1"))
    login(client, "owner@bean.tw")
    page = client.get(f"/admin/customers/{older}").text
    timeline = page[page.index('id="section-timeline"'):]
    assert timeline.index("tasting_night") < timeline.index("瀏覽頁面") < timeline.index(
        "掃描 QR Code")
    assert "自訂" in timeline
