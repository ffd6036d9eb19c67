"""Personal data: export across merged profiles, erasure that keeps the numbers, who may."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.db import Database, Session
from omniloop.core.errors import Forbidden
from omniloop.customers import consent, privacy
from omniloop.customers.errors import CustomerErased, ErasureReasonInvalid
from omniloop.customers.events import record_event
from omniloop.customers.models import (
    Channel,
    ConsentStatus,
    Customer,
    CustomerConsent,
    CustomerIdentity,
    CustomerMerge,
    Event,
)
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import AuditEntry, Role, Store, Tenant
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant
from tests.tenancy.test_concurrency import race

LINE_ID = "U" + "c3" * 16
PHONE_TYPED, PHONE = "0912-345-678", "+886912345678"
EMAIL = "amy.lin@example.com"
NAME = "林小美"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林咖啡")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> str:
    return make_api_key(session, tenant, scopes=["admin"])


@pytest.fixture
def store(session: Session, tenant: Tenant) -> Store:
    return make_store(session, tenant, code="TPE01")


def identify(client: TestClient, key: str, *identities: tuple[str, str],
             **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": k, "value": v} for k, v in identities], **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def add_event(database: Database, tenant: Tenant, customer_id: str, client_event_id: str,
              type: str, minutes: int, properties: dict[str, Any],
              store: Store | None = None) -> None:
    with database.unit_of_work() as uow:
        record_event(uow, system_actor(tenant.id), client_event_id=client_event_id, type=type,
                     channel="offline" if store else "online", customer_id=customer_id,
                     occurred_at=T0 + timedelta(minutes=minutes), source="pos" if store else "web",
                     store_id=store.id if store else None, properties=properties)


@pytest.fixture
def person(client: TestClient, key: str, database: Database, tenant: Tenant,
           store: Store) -> dict[str, str]:
    """One person on two merged profiles, with identities, traits, consents and events."""
    older = identify(client, key, ("phone", PHONE_TYPED), ("email", EMAIL), traits={
        "name": NAME, "birthday": "1990-05-17", "gender": "female",
        "home_store_id": store.id, "language": "zh_TW", "tags": ["vip"]})["customer"]["id"]
    newer = identify(client, key, ("line", LINE_ID), ("pos_card", "CARD-0042"),
                     traits={"name": "Amy Lin", "tags": ["latte"]})["customer"]["id"]
    add_event(database, tenant, newer, f"line:{LINE_ID}:follow", "line_follow", 0,
              {"display_name": "Amy 🌸", "line_user_id": LINE_ID})
    add_event(database, tenant, older, "order:O-1", "purchase", 5, {
        "order_id": "O-1", "total_minor": 24000, "currency": "TWD", "phone": PHONE,
        "note": f"call {PHONE_TYPED} when ready",
        "items": [{"sku": "LATTE-L", "quantity": 2, "total_minor": 24000,
                   "engraving": NAME}]}, store=store)
    add_event(database, tenant, older, "refund:R-1", "refund", 7, {
        "order_id": "O-1", "refund_id": "R-1", "amount_minor": 12000, "currency": "TWD",
        "lines": [{"line_id": "L-1", "quantity": 1, "amount_minor": 12000}],
        "reason": f"{NAME} changed her mind"}, store=store)
    add_event(database, tenant, newer, "fb-1", "feedback_submitted", 10, {
        "rating": 5, "comment": f"{NAME} loved it", "status": EMAIL})
    with database.unit_of_work() as uow:
        actor = system_actor(tenant.id)
        consent.set_consent(uow, actor, older, Channel.email, ConsentStatus.opted_in,
                            "web_form")
        consent.set_consent(uow, actor, newer, Channel.line, ConsentStatus.opted_in,
                            "line_follow")
    joined = identify(client, key, ("phone", "+886 912 345 678"), ("line", LINE_ID))
    assert joined["merged"] == [newer]
    return {"survivor": older, "merged": newer}


def everything_in(session: Session, model: type[Any]) -> str:
    """Every column of every row of a table, as one string to search."""
    fresh(session)
    rows = session.scalars(select(model)).all()
    return json.dumps([{c.key: getattr(r, c.key) for c in model.__table__.columns}
                       for r in rows], ensure_ascii=False, default=str)


def test_export_covers_every_merged_profile(client: TestClient, key: str,
                                            person: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[set[str]] = []

    def points(_session: Session, _actor: Any, customer: Customer,
               ids: set[str]) -> list[dict[str, Any]]:
        seen.append(ids)
        return [{"customer_id": customer.id, "balance": 120, "at": T0}]

    monkeypatch.setitem(privacy.EXPORT_SECTIONS, "points", points)
    response = client.get(f"/api/v1/customers/{person['merged']}/export", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        f"attachment; filename=customer-{person['survivor']}.json")
    data = response.json()
    assert (data["format"], data["version"], data["brand"]) == (
        "omniloop.customer-export", 1, "豆留森林咖啡")
    assert data["customer_id"] == person["survivor"]
    assert {p["id"] for p in data["profiles"]} == {person["survivor"], person["merged"]}
    assert {p["name"] for p in data["profiles"]} == {NAME, "Amy Lin"}
    assert sorted((i["kind"], i["value"]) for i in data["identities"]) == [
        ("email", EMAIL), ("line", LINE_ID), ("phone", PHONE), ("pos_card", "CARD-0042")]
    assert [e["type"] for e in data["events"] if e["type"] != "consent_changed"] == [
        "line_follow", "purchase", "refund", "feedback_submitted"]  # oldest first
    times = [e["occurred_at"] for e in data["events"]]
    assert times == sorted(times)
    assert {e["customer_id"] for e in data["events"]} == {person["survivor"], person["merged"]}
    assert data["events"][0]["properties"]["display_name"] == "Amy 🌸"
    assert {(c["customer_id"], c["channel"], c["status"]) for c in data["consents"]} == {
        (person["survivor"], "email", "opted_in"), (person["merged"], "line", "opted_in")}
    assert [(m["survivor_id"], m["merged_id"]) for m in data["merges"]] == [
        (person["survivor"], person["merged"])]
    assert "actor_label" not in data["merges"][0]
    assert data["points"] == [{"customer_id": person["survivor"], "balance": 120,
                               "at": T0.isoformat()}]
    assert seen == [{person["survivor"], person["merged"]}]
    with pytest.raises(ValueError, match="built-in"):
        privacy.register_export_section("events", points)


def test_export_needs_the_brand_and_read_access(client: TestClient, session: Session,
                                                 person: dict[str, str]) -> None:
    rival_key = make_api_key(session, make_tenant(session, slug="rival"))
    base = f"/api/v1/customers/{person['survivor']}"
    for response in (client.get(f"{base}/export", headers=bearer(rival_key)),
                     client.post(f"{base}/erase", headers=bearer(rival_key),
                                 json={"reason": "asked"})):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "customer_not_found"
    assert client.get(f"/api/v1/customers/{person['survivor']}/export").status_code == 401


def test_erase_removes_the_person_and_keeps_the_numbers(
        client: TestClient, key: str, session: Session, tenant: Tenant, store: Store,
        person: dict[str, str]) -> None:
    survivor, merged = person["survivor"], person["merged"]
    fresh(session)
    events_before = session.scalar(select(func.count()).select_from(Event))
    response = client.post(f"/api/v1/customers/{merged}/erase", headers=bearer(key),
                           json={"reason": "Asked at the counter to delete her data."})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customer"]["id"] == survivor
    assert body["customer"]["erased_at"] is not None
    assert sorted(body["profile_ids"]) == sorted([survivor, merged])
    assert body["counts"]["identities"] == 4
    assert body["counts"]["consents"] == 2
    assert body["counts"]["profiles"] == 2
    assert body["counts"]["events_kept"] == events_before

    fresh(session)
    assert session.scalar(select(func.count()).select_from(CustomerIdentity)) == 0
    assert session.scalar(select(func.count()).select_from(CustomerConsent)) == 0
    for profile in session.scalars(select(Customer)):
        assert (profile.name, profile.birthday, profile.gender, profile.language,
                profile.tags) == (None, None, None, None, [])
        assert profile.erased_at is not None
    assert session.get_one(Customer, (tenant.id, survivor)).home_store_id == store.id

    # Every event is still there, on the profile it arrived on, with only business values.
    assert session.scalar(select(func.count()).select_from(Event)) == events_before
    events = {e.type: e for e in session.scalars(select(Event))}
    purchase = events["purchase"]
    assert purchase.properties == {"order_id": "O-1", "total_minor": 24000, "currency": "TWD",
                                   "items": [{"sku": "LATTE-L", "quantity": 2,
                                              "total_minor": 24000}]}
    assert (purchase.customer_id, purchase.store_id, purchase.channel, purchase.occurred_at
            .replace(tzinfo=UTC)) == (survivor, store.id, "offline", T0 + timedelta(minutes=5))
    assert purchase.client_event_id == "order:O-1"  # nothing personal in it: kept
    assert events["refund"].properties == {
        "order_id": "O-1", "refund_id": "R-1", "amount_minor": 12000, "currency": "TWD",
        "lines": [{"line_id": "L-1", "quantity": 1, "amount_minor": 12000}]}
    assert events["feedback_submitted"].properties == {"rating": 5}
    follow = events["line_follow"]
    assert follow.properties == {}
    assert follow.customer_id == merged
    assert follow.client_event_id == f"erased:{follow.id}"
    merge = session.scalars(select(CustomerMerge)).one()
    assert NAME not in json.dumps(merge.snapshot, ensure_ascii=False)
    assert merge.snapshot["survivor_before"]["home_store_id"] == store.id

    # Nothing personal is left anywhere in omniloop's customer tables or the audit log.
    for model in (Customer, CustomerIdentity, CustomerConsent, CustomerMerge, Event,
                  AuditEntry):
        dump = everything_in(session, model)
        for value in (PHONE, PHONE.lstrip("+"), "0912345678", PHONE_TYPED, EMAIL, LINE_ID,
                      NAME, "Amy Lin", "CARD-0042", "1990-05-17"):
            assert value not in dump, (model.__name__, value)
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "customer.erase")).one()
    assert (entry.entity_type, entry.entity_id) == ("customer", survivor)
    assert entry.details["reason"] == "Asked at the counter to delete her data."
    assert entry.details["counts"]["identities"] == 4
    # The four above, and the two consent changes (their `source` went).
    assert entry.details["counts"]["events_scrubbed"] == 6

    # The profile still answers, showing nothing personal.
    shown = client.get(f"/api/v1/customers/{merged}", headers=bearer(key)).json()
    assert shown["id"] == survivor
    assert shown["erased_at"] is not None
    assert (shown["name"], shown["birthday"], shown["identities"], shown["tags"]) == (
        None, None, [], [])
    assert all(c["may_message"] is False and c["status"] is None for c in client.get(
        f"/api/v1/customers/{survivor}/consents", headers=bearer(key)).json())
    fresh(session)
    assert consent.may_message(session, tenant.id, survivor, Channel.email) is False
    exported = client.get(f"/api/v1/customers/{survivor}/export", headers=bearer(key))
    assert PHONE not in exported.text
    assert NAME not in exported.text

    # The old phone is nobody now: identifying with it starts a new, unrelated profile.
    again = identify(client, key, ("phone", PHONE_TYPED))
    assert again["created"] is True
    assert again["customer"]["id"] not in (survivor, merged)
    assert again["customer"]["erased_at"] is None

    # Erasing again, or changing the erased profile's consent, is refused.
    twice = client.post(f"/api/v1/customers/{survivor}/erase", headers=bearer(key),
                        json={"reason": "again"})
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "customer_erased"
    refused = client.put(f"/api/v1/customers/{survivor}/consents/email", headers=bearer(key),
                         json={"status": "opted_in"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "customer_erased"
    # An unsubscribe link sent before the erasure still answers, and writes nothing.
    link = consent.unsubscribe_url(tenant.id, survivor, Channel.email)
    assert client.post(link.removeprefix("http://testserver")).status_code == 200
    fresh(session)
    assert session.scalar(select(func.count()).select_from(CustomerConsent)) == 0


def test_personal_values_in_the_reason_are_redacted(client: TestClient, key: str,
                                                     session: Session) -> None:
    customer = identify(client, key, ("phone", PHONE_TYPED), ("email", EMAIL),
                        traits={"name": NAME})["customer"]["id"]
    response = client.post(f"/api/v1/customers/{customer}/erase", headers=bearer(key), json={
        "reason": f"{NAME} (0912 345 678, {EMAIL.upper()}) asked by phone on 2026-03-02"})
    assert response.status_code == 200, response.text
    fresh(session)
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "customer.erase")).one()
    assert entry.details["reason"] == (
        "[erased] ([erased], [erased]) asked by phone on 2026-03-02")
    dump = everything_in(session, AuditEntry)
    for value in ("0912", EMAIL, NAME):
        assert value not in dump


def test_only_owners_and_admin_keys_may_erase(client: TestClient, session: Session,
                                              tenant: Tenant, store: Store,
                                              database: Database) -> None:
    admin_key = make_api_key(session, tenant, scopes=["admin"])
    customer = identify(client, admin_key, ("phone", PHONE_TYPED),
                        traits={"name": NAME})["customer"]["id"]
    for scopes in (["pos"], ["ingest"], ["pos", "ingest"]):
        limited = make_api_key(session, tenant, scopes=scopes)
        response = client.post(f"/api/v1/customers/{customer}/erase", headers=bearer(limited),
                               json={"reason": "asked"})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "scope_required"
    for role in (Role.marketer, Role.store_manager, Role.cashier):
        actor = staff_actor(tenant.id, "0" * 26, "staff", role, frozenset({store.id}))
        with database.unit_of_work() as uow, pytest.raises(Forbidden):
            privacy.erase_customer(uow, actor, customer, "asked")
    fresh(session)
    assert session.get_one(Customer, (tenant.id, customer)).name == NAME
    assert session.scalar(select(func.count()).select_from(CustomerIdentity)) == 1
    owner = staff_actor(tenant.id, "0" * 26, "owner", Role.owner, frozenset())
    with database.unit_of_work() as uow:
        privacy.erase_customer(uow, owner, customer, "asked")
    fresh(session)
    assert session.get_one(Customer, (tenant.id, customer)).erased_at is not None


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501},
                                  {"reason": "ok", "force": True}])
def test_erase_needs_a_reason(client: TestClient, key: str, session: Session,
                              body: dict[str, Any]) -> None:
    customer = identify(client, key, ("phone", PHONE_TYPED))["customer"]["id"]
    response = client.post(f"/api/v1/customers/{customer}/erase", headers=bearer(key),
                           json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    fields = [error.get("field")] + [d["field"] for d in error.get("details", [])]
    assert ("force" if "force" in body else "reason") in fields
    fresh(session)
    assert session.scalar(select(func.count()).select_from(CustomerIdentity)) == 1


def test_service_refuses_a_blank_reason(database: Database, tenant: Tenant, client: TestClient,
                                        key: str) -> None:
    customer = identify(client, key, ("phone", PHONE_TYPED))["customer"]["id"]
    with database.unit_of_work() as uow, pytest.raises(ErasureReasonInvalid) as caught:
        privacy.erase_customer(uow, system_actor(tenant.id), customer, "  \n ")
    assert caught.value.field == "reason"
    assert caught.value.status == 422


def test_registered_erase_steps_run_and_are_counted(
        client: TestClient, key: str, session: Session, person: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[set[str]] = []

    def orders_step(_session: Session, _actor: Any, _customer: Customer,
                    ids: set[str]) -> int:
        calls.append(ids)
        return 7

    monkeypatch.setitem(privacy.ERASE_STEPS, "orders", orders_step)
    response = client.post(f"/api/v1/customers/{person['survivor']}/erase",
                           headers=bearer(key), json={"reason": "asked"})
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["orders"] == 7
    assert calls == [{person["survivor"], person["merged"]}]


def test_concurrent_erasures_erase_once(database: Database, session: Session, tenant: Tenant,
                                        client: TestClient, key: str) -> None:
    customer = identify(client, key, ("phone", PHONE_TYPED), ("email", EMAIL),
                        traits={"name": NAME})["customer"]["id"]
    actor = system_actor(tenant.id)

    def call(index: int) -> str:
        with database.unit_of_work() as uow:
            privacy.erase_customer(uow, actor, customer, f"request {index}")
            return "erased"

    outcomes = race(5, call)
    assert outcomes == {"erased": 1, CustomerErased.code: 4}, outcomes
    fresh(session)
    assert session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "customer.erase")) == 1


def test_openapi_names_the_privacy_operations(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"customers-consents", "customers-set-consent", "customers-export",
            "customers-erase"} <= operations
    erase = spec["paths"]["/api/v1/customers/{customer_id}/erase"]["post"]
    assert "admin" in erase["description"]
