"""No-shows, penalty points, the risk score and the blacklist; the program API; POS cards."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.models import CustomerIdentity
from omniloop.loyalty.member_card import bind_pos_card
from omniloop.loyalty.models import LoyaltyProgram, NoShow, NoShowKind, PointsEntry
from omniloop.loyalty.program import stored_program
from omniloop.loyalty.risk import mark_no_show
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Tenant
from tests.customers.factories import make_customer
from tests.loyalty.test_ledger import assert_consistent, order
from tests.tenancy.factories import bearer, fresh, make_api_key, make_tenant
from tests.tenancy.test_concurrency import race


@pytest.fixture
def shop(session: Session) -> tuple[Tenant, str]:
    """A brand taking 50 penalty points per no-show and blacklisting after two; a member
    holding 30 points."""
    tenant = make_tenant(session)
    fresh(session)
    program = stored_program(session, tenant.id)
    program.earn_unit_minor = 100
    program.no_show_penalty_points = 50
    program.auto_blacklist_no_shows = 2
    session.commit()
    placed = order(session, tenant, "N-1", 3000)
    assert placed.customer_id is not None
    return tenant, placed.customer_id


def no_show(client: TestClient, headers: dict[str, str], customer_id: str,
            reference: str, **fields: Any) -> Any:
    body = {"kind": "booking", "reference": reference,
            "due_at": (utcnow() - timedelta(hours=2)).isoformat(), **fields}
    return client.post(f"/api/v1/customers/{customer_id}/no-shows", json=body, headers=headers)


def test_no_shows_take_penalty_points_raise_risk_and_blacklist(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    first = no_show(client, pos, customer_id, "BK-1")
    assert first.status_code == 201, first.text
    assert first.json()["penalty_points"] == 30  # the penalty takes what there is
    assert assert_consistent(session, tenant, customer_id) == 0
    retry = no_show(client, pos, customer_id, "BK-1")
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    risk = client.get(f"/api/v1/customers/{customer_id}/risk", headers=pos).json()
    assert (risk["level"], risk["score"], risk["no_shows"]) == ("watch", 50, 1)

    second = no_show(client, pos, customer_id, "PU-9", kind="pickup")
    assert second.json()["penalty_points"] == 0  # nothing left to take
    liability = client.get("/api/v1/loyalty/liability", headers=admin).json()
    assert liability["unrecovered_points"] == 0  # a penalty not collected is no loss
    scanned = client.get(f"/api/v1/customers/{customer_id}/risk", headers=pos).json()
    assert scanned["level"] == "blacklisted"  # two within 90 days: automatic blacklist
    assert scanned["score"] == 100
    assert scanned["blacklist_history"][0]["reason"] == "2 no-shows within 90 days"

    cancelled = client.post(f"/api/v1/no-shows/{first.json()['id']}/cancel", headers=pos)
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled_at"] is not None
    assert assert_consistent(session, tenant, customer_id) == 30  # the penalty came back
    again = client.post(f"/api/v1/no-shows/{first.json()['id']}/cancel", headers=pos)
    assert again.status_code == 200
    assert assert_consistent(session, tenant, customer_id) == 30
    after = client.get(f"/api/v1/customers/{customer_id}/risk", headers=pos).json()
    assert after["no_shows"] == 1  # still blacklisted until lifted or ended
    assert after["level"] == "blacklisted"


def test_bad_no_shows_are_refused_and_write_nothing(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    other = make_customer(session, tenant, ("phone", "0987-654-321"))
    assert no_show(client, pos, customer_id, "BK-7").status_code == 201
    taken = no_show(client, pos, other, "BK-7")
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "no_show_taken")
    future = no_show(client, pos, customer_id, "BK-8",
                     due_at=(utcnow() + timedelta(hours=1)).isoformat())
    assert future.json()["error"]["code"] == "no_show_in_future"
    naive = no_show(client, pos, customer_id, "BK-9", due_at="2026-01-01T10:00:00")
    assert naive.status_code == 422
    unknown = no_show(client, pos, customer_id, "BK-10", kind="party")
    assert unknown.status_code == 422
    missing = no_show(client, pos, "01NOSUCHCUSTOMER0000000000", "BK-11")
    assert missing.status_code == 404
    fresh(session)
    assert session.scalar(select(func.count()).select_from(NoShow)) == 1
    assert session.scalar(select(func.count()).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.customer_id == other)) == 0


def test_blacklist_needs_a_reason_and_an_end_and_can_be_lifted(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    url = f"/api/v1/customers/{customer_id}/blacklist"
    ends = (utcnow() + timedelta(days=30)).isoformat()
    blank = client.post(url, json={"reason": " ", "ends_at": ends}, headers=admin)
    assert (blank.status_code, blank.json()["error"]["code"]) == (422, "validation_error")
    past = client.post(url, json={"reason": "abuse", "ends_at": utcnow().isoformat()},
                       headers=admin)
    assert past.json()["error"]["code"] == "blacklist_end_invalid"
    assert client.post(url, json={"reason": "abuse"}, headers=admin).status_code == 422
    assert client.post(url, json={"reason": "abuse", "ends_at": ends},
                       headers=pos).status_code == 403  # the counter cannot
    added = client.post(url, json={"reason": "Threatened staff", "ends_at": ends},
                        headers=admin)
    assert added.status_code == 201, added.text
    scan = client.get(f"/api/v1/customers/{customer_id}/points", headers=pos).json()
    assert scan["risk"]["level"] == "blacklisted"
    assert scan["risk"]["blacklist_reason"] == "Threatened staff"
    lifted = client.post(f"/api/v1/blacklist/{added.json()['id']}/lift", headers=admin)
    assert lifted.json()["lifted_by"]
    assert client.get(f"/api/v1/customers/{customer_id}/risk",
                      headers=pos).json()["level"] == "none"
    fresh(session)
    actions = set(session.scalars(select(AuditEntry.action).where(
        AuditEntry.tenant_id == tenant.id)))
    assert {"customer.blacklist", "customer.blacklist_lift"} <= actions


def test_the_program_can_be_read_and_changed_with_checks(
        client: TestClient, session: Session) -> None:
    tenant = make_tenant(session)
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    program = client.get("/api/v1/loyalty/program", headers=admin)
    assert program.status_code == 200
    body = program.json()
    assert [t["code"] for t in body["tiers"]] == ["member", "silver", "gold"]
    fresh(session)  # reading the defaults wrote nothing: the row comes with the first save
    assert session.get(LoyaltyProgram, tenant.id) is None
    body.update(earn_unit_minor=5000, expiry_months=24, no_show_penalty_points=20)
    body["tiers"][2]["multiplier_bp"] = 20000
    changed = client.put("/api/v1/loyalty/program", json=body, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["tiers"][2]["multiplier_bp"] == 20000
    for tiers, code in (
            ([{**body["tiers"][0]}, {**body["tiers"][0], "threshold_minor": 5}],
             "program_invalid"),
            ([{**body["tiers"][1]}], "program_invalid"),
            ([{**body["tiers"][0]}, {**body["tiers"][1], "threshold_minor": 0}],
             "program_invalid"),
            ([{**body["tiers"][0], "birthday_campaign_id": "01NOSUCHCAMPAIGN0000000000"}],
             "campaign_not_found")):
        refused = client.put("/api/v1/loyalty/program", json={**body, "tiers": tiers},
                             headers=admin)
        assert refused.json()["error"]["code"] == code, refused.text
    for field, value in (("earn_unit_minor", 0), ("max_redeem_share_bp", 10001),
                         ("min_redeem_points", -1), ("rounding", "sideways")):
        refused = client.put("/api/v1/loyalty/program", json={**body, field: value},
                             headers=admin)
        assert refused.status_code == 422, field
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    assert client.put("/api/v1/loyalty/program", json=body, headers=pos).status_code == 403
    fresh(session)
    stored = session.get_one(LoyaltyProgram, tenant.id)
    assert (stored.earn_unit_minor, stored.expiry_months) == (5000, 24)
    assert session.scalar(select(func.count()).where(
        AuditEntry.tenant_id == tenant.id, AuditEntry.action == "loyalty.program_update")) == 1


def test_a_pos_card_is_bound_once_and_never_to_two_people(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    other = make_customer(session, tenant, ("phone", "0987-654-321"))
    url = f"/api/v1/pos/members/{customer_id}/pos-card"
    bound = client.post(url, json={"card_number": " 88001234 "}, headers=pos)
    assert bound.status_code == 200, bound.text
    assert client.post(url, json={"card_number": "88001234"}, headers=pos).status_code == 200
    spaced = client.post(url, json={"card_number": "8800 1234"}, headers=pos)
    assert spaced.json()["error"]["field"] == "card_number"
    taken = client.post(f"/api/v1/pos/members/{other}/pos-card",
                        json={"card_number": "88001234"}, headers=pos)
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "pos_card_taken")
    fresh(session)
    assert session.scalar(select(func.count()).where(
        CustomerIdentity.tenant_id == tenant.id, CustomerIdentity.kind == "pos_card")) == 1
    # A purchase rung up on the card lands on the member.
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    placed = client.post("/api/v1/orders", headers=admin, json={
        "external_id": "CARD-1", "identities": [{"kind": "pos_card", "value": "88001234"}],
        "lines": [{"sku": "X", "quantity": 1, "unit_price_minor": 10000}],
        "paid_at": utcnow().isoformat()})
    assert placed.status_code == 201, placed.text
    assert placed.json()["customer_id"] == customer_id


def test_the_daily_job_and_liability_through_the_api(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, _ = shop
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    run = client.post("/api/v1/loyalty/jobs/daily", headers=admin)
    assert run.status_code == 200, run.text
    assert run.json()["tiers_upgraded"] == 1
    assert client.post("/api/v1/loyalty/jobs/daily", headers=admin).json()[
        "tiers_upgraded"] == 0
    report = client.get("/api/v1/loyalty/liability", headers=admin).json()
    assert (report["points"], report["value_minor"], report["currency"]) == (30, 3000, "TWD")
    assert sum(m["points"] for m in report["months"]) == 30


def test_one_no_show_marked_at_many_counters_at_once_penalises_once(
        database: Database, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop

    def mark(_: int) -> str:
        with database.unit_of_work() as s:
            _recorded, created = mark_no_show(s, system_actor(tenant.id), customer_id,
                                              kind=NoShowKind.booking,
                                              reference="RACE-1",
                                              due_at=utcnow() - timedelta(hours=1))
        return "created" if created else "replayed"

    outcomes = race(8, mark)
    assert outcomes == Counter({"created": 1, "replayed": 7})
    assert assert_consistent(session, tenant, customer_id) == 0  # 30 points, one penalty
    assert session.scalar(select(func.count()).select_from(NoShow)) == 1


def test_one_card_bound_at_two_counters_at_once_goes_to_one_member(
        database: Database, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    other = make_customer(session, tenant, ("phone", "0987-654-321"))
    people = [customer_id, other]

    def bind(index: int) -> str:
        with database.unit_of_work() as s:
            bind_pos_card(s, system_actor(tenant.id), people[index % 2], "77001234")
        return people[index % 2]

    outcomes = race(8, bind)
    winners = [who for who in outcomes if who in people]
    assert len(winners) == 1
    assert outcomes[winners[0]] == 4
    assert outcomes["pos_card_taken"] == 4


def test_who_has_points_expiring_soon_is_listed_for_reminders(
        client: TestClient, session: Session, shop: tuple[Tenant, str]) -> None:
    tenant, customer_id = shop
    order(session, tenant, "OLD-1", 1200, days_ago=350)  # expires in about 15 days
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    soon = client.get("/api/v1/loyalty/expiring", headers=admin)
    assert soon.status_code == 200, soon.text
    assert [(r["customer_id"], r["points"]) for r in soon.json()] == [(customer_id, 12)]
    later = client.get("/api/v1/loyalty/expiring?within_days=366", headers=admin).json()
    assert later[0]["points"] == 12 + 30
    assert client.get("/api/v1/loyalty/expiring?within_days=0",
                      headers=admin).status_code == 422
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    assert client.get("/api/v1/loyalty/expiring", headers=pos).status_code == 403
