"""Identify: one person across identities, merges recorded and undone exactly, races."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.clock import as_utc
from omniloop.core.db import Database, Session
from omniloop.customers import identify as identify_service
from omniloop.customers.errors import InvalidIdentity
from omniloop.customers.models import Customer, CustomerIdentity, CustomerMerge, IdentityKind
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant
from tests.tenancy.test_concurrency import race

LINE_ID = "U" + "a1" * 16


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> str:
    return make_api_key(session, tenant, scopes=["admin"])


def identify(client: TestClient, key: str, *identities: tuple[str, str],
             **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": k, "value": v} for k, v in identities], **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def state(session: Session) -> dict[str, Any]:
    """Everything identify and merges touch, to compare before and after."""
    fresh(session)
    customers = {c.id: (c.name, c.birthday, c.gender, c.home_store_id, c.language,
                        tuple(c.tags), c.merged_into_id)
                 for c in session.scalars(select(Customer))}
    identities = {(i.kind, i.value): i.customer_id
                  for i in session.scalars(select(CustomerIdentity))}
    return {"customers": customers, "identities": identities}


def test_phone_formats_are_one_person(client: TestClient, key: str) -> None:
    first = identify(client, key, ("phone", "0912-345-678"), traits={"name": "林小美"})
    assert first["created"] is True
    again = identify(client, key, ("phone", "+886 912 345 678"))
    assert again["created"] is False
    assert again["customer"]["id"] == first["customer"]["id"]
    assert again["customer"]["name"] == "林小美"
    assert [(i["kind"], i["value"]) for i in again["customer"]["identities"]] == [
        ("phone", "+886912345678")]


def test_email_normalised_and_traits_set(client: TestClient, key: str,
                                         session: Session, tenant: Tenant) -> None:
    store = make_store(session, tenant, code="TPE-01")
    made = identify(client, key, ("email", "  Amy.Lin@Example.COM "), traits={
        "birthday": "1990-05-17", "gender": "female", "home_store_id": store.id,
        "language": "zh_TW", "tags": ["vip", "latte"]})["customer"]
    assert made["identities"][0]["value"] == "amy.lin@example.com"
    assert (made["birthday"], made["gender"], made["home_store_id"]) == (
        "1990-05-17", "female", store.id)
    tagged = identify(client, key, ("email", "amy.lin@example.com"), traits={"tags": ["oat"]})
    assert tagged["customer"]["tags"] == ["latte", "oat", "vip"]


def test_two_profiles_merge_into_the_older(client: TestClient, key: str,
                                           session: Session) -> None:
    older = identify(client, key, ("pos_card", "CARD-0001"), traits={"name": "陳大文"})
    newer = identify(client, key, ("line", LINE_ID), traits={"birthday": "1985-01-02"})
    joined = identify(client, key, ("line", LINE_ID), ("pos_card", "CARD-0001"),
                      ("phone", "0922333444"))
    assert joined["customer"]["id"] == older["customer"]["id"]
    assert joined["merged"] == [newer["customer"]["id"]]
    assert joined["customer"]["name"] == "陳大文"
    assert joined["customer"]["birthday"] == "1985-01-02"  # filled from the merged profile
    assert sorted(i["kind"] for i in joined["customer"]["identities"]) == [
        "line", "phone", "pos_card"]
    # The merged-away id still answers, with the survivor.
    via_old_id = client.get(f"/api/v1/customers/{newer['customer']['id']}", headers=bearer(key))
    assert via_old_id.json()["id"] == older["customer"]["id"]
    history = client.get(f"/api/v1/customers/{older['customer']['id']}/merges",
                         headers=bearer(key)).json()
    assert len(history) == 1
    assert history[0]["merged_id"] == newer["customer"]["id"]
    assert "shared identities" in history[0]["reason"]
    fresh(session)
    assert session.scalar(select(func.count()).select_from(CustomerMerge)) == 1


def test_undo_restores_the_exact_prior_state(client: TestClient, key: str,
                                             session: Session) -> None:
    identify(client, key, ("pos_card", "CARD-0001"), traits={"name": "陳大文", "tags": ["a"]})
    identify(client, key, ("line", LINE_ID), ("device", "dev-1"),
             traits={"birthday": "1985-01-02", "gender": "male", "tags": ["b"]})
    before = state(session)
    joined = identify(client, key, ("line", LINE_ID), ("pos_card", "CARD-0001"))
    assert state(session) != before
    merge_id = client.get(f"/api/v1/customers/{joined['customer']['id']}/merges",
                          headers=bearer(key)).json()[0]["id"]
    undone = client.post(f"/api/v1/customers/merges/{merge_id}/undo", headers=bearer(key))
    assert undone.status_code == 200, undone.text
    assert undone.json()["undone_at"] is not None
    assert state(session) == before
    again = client.post(f"/api/v1/customers/merges/{merge_id}/undo", headers=bearer(key))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "merge_already_undone"


def test_undo_keeps_changes_made_after_the_merge(client: TestClient, key: str) -> None:
    identify(client, key, ("pos_card", "CARD-0001"))
    identify(client, key, ("line", LINE_ID), traits={"name": "Merged Name"})
    joined = identify(client, key, ("line", LINE_ID), ("pos_card", "CARD-0001"))
    assert joined["customer"]["name"] == "Merged Name"
    survivor = joined["customer"]["id"]
    identify(client, key, ("pos_card", "CARD-0001"), traits={"name": "Typed at the counter"})
    merge_id = client.get(f"/api/v1/customers/{survivor}/merges",
                          headers=bearer(key)).json()[0]["id"]
    client.post(f"/api/v1/customers/merges/{merge_id}/undo", headers=bearer(key))
    assert client.get(f"/api/v1/customers/{survivor}",
                      headers=bearer(key)).json()["name"] == "Typed at the counter"


def test_undo_refused_while_survivor_is_merged_further(client: TestClient, key: str) -> None:
    identify(client, key, ("pos_card", "C-1"))
    identify(client, key, ("pos_card", "C-2"))
    identify(client, key, ("pos_card", "C-3"))
    first = identify(client, key, ("pos_card", "C-2"), ("pos_card", "C-3"))
    inner = client.get(f"/api/v1/customers/{first['customer']['id']}/merges",
                       headers=bearer(key)).json()[0]["id"]
    outer = identify(client, key, ("pos_card", "C-1"), ("pos_card", "C-2"))
    assert outer["merged"] == [first["customer"]["id"]]
    refused = client.post(f"/api/v1/customers/merges/{inner}/undo", headers=bearer(key))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "merge_has_later_merges"


@pytest.mark.parametrize(("identity", "code", "field"), [
    ({"kind": "phone", "value": "not a phone"}, "invalid_identity", "identities.0.value"),
    ({"kind": "phone", "value": "12"}, "invalid_identity", "identities.0.value"),
    ({"kind": "email", "value": "amy@"}, "invalid_identity", "identities.0.value"),
    ({"kind": "line", "value": "not-a-line-id"}, "invalid_identity", "identities.0.value"),
    ({"kind": "fax", "value": "123"}, "validation_error", "identities.0.kind"),
    ({"kind": "phone", "value": ""}, "validation_error", "identities.0.value"),
])
def test_bad_identities_are_rejected_naming_the_field(
        client: TestClient, key: str, session: Session, identity: dict[str, str], code: str,
        field: str) -> None:
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [identity]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    fields = [error.get("field")] + [d["field"] for d in error.get("details", [])]
    assert field in fields
    assert state(session) == {"customers": {}, "identities": {}}


def test_second_bad_identity_writes_nothing(client: TestClient, key: str,
                                            session: Session) -> None:
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": "phone", "value": "0912345678"},
                       {"kind": "phone", "value": "09"}]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "identities.1.value"
    assert state(session) == {"customers": {}, "identities": {}}


def test_other_tenants_customer_is_404(client: TestClient, key: str, session: Session) -> None:
    other = make_tenant(session, slug="rival")
    theirs = identify(client, make_api_key(session, other), ("phone", "0912345678"))
    assert client.get(f"/api/v1/customers/{theirs['customer']['id']}",
                      headers=bearer(key)).status_code == 404
    mine = identify(client, key, ("phone", "0912345678"))
    assert mine["created"] is True  # the same number is a different person in another brand
    assert mine["customer"]["id"] != theirs["customer"]["id"]


def test_home_store_must_be_the_brands(client: TestClient, key: str, session: Session) -> None:
    foreign_store = make_store(session, make_tenant(session, slug="rival"))
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": "phone", "value": "0912345678"}],
        "traits": {"home_store_id": foreign_store.id}})
    assert response.status_code == 404
    assert state(session) == {"customers": {}, "identities": {}}


def test_concurrent_identify_of_a_new_phone_creates_one_customer(
        database: Database, session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)

    def call(index: int) -> str:
        with database.unit_of_work() as uow:
            result = identify_service.identify(
                uow, actor, [IdentityIn(kind=IdentityKind.phone, value="0912-000-111"),
                             IdentityIn(kind=IdentityKind.device, value=f"dev-{index}")],
                Traits(name=f"caller {index}"))
            return result.customer.id

    outcomes = race(8, call)
    assert not [o for o in outcomes if o.startswith("crash")], outcomes
    assert len(outcomes) == 1  # every caller got the same customer id
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Customer)) == 1
    assert session.scalar(select(func.count()).select_from(CustomerIdentity)) == 9


def test_undo_refused_after_erasure(client: TestClient, key: str) -> None:
    identify(client, key, ("pos_card", "C-1"))
    identify(client, key, ("pos_card", "C-2"))
    joined = identify(client, key, ("pos_card", "C-1"), ("pos_card", "C-2"))
    survivor = joined["customer"]["id"]
    merge_id = client.get(f"/api/v1/customers/{survivor}/merges",
                          headers=bearer(key)).json()[0]["id"]
    erased = client.post(f"/api/v1/customers/{survivor}/erase", headers=bearer(key),
                         json={"reason": "customer asked under PDPA art. 11"})
    assert erased.status_code == 200, erased.text
    refused = client.post(f"/api/v1/customers/merges/{merge_id}/undo", headers=bearer(key))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "customer_erased"


def _instant(text: str | None) -> datetime | None:
    """An answer's timestamp as a UTC instant (SQLite gives back naive UTC)."""
    if text is None:
        return None
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _comparable(customer: dict[str, Any]) -> dict[str, Any]:
    return {**customer, **{name: _instant(customer[name])
                           for name in ("created_at", "updated_at", "erased_at")},
            "identities": [{**i, "created_at": _instant(i["created_at"])}
                           for i in customer["identities"]]}


def test_the_answer_is_the_profile_as_stored(client: TestClient, key: str,
                                             session: Session, tenant: Tenant) -> None:
    store = make_store(session, tenant, code="TPE-01")
    calls: list[tuple[tuple[str, str], dict[str, Any]]] = [
        (("phone", "0912-345-678"), {"traits": {"name": "林小美", "tags": ["b", "a"]}}),
        (("phone", "+886 912 345 678"), {}),
        (("phone", "0912345678"), {"traits": {"birthday": "1990-05-17", "gender": "female",
                                              "home_store_id": store.id, "language": "en",
                                              "tags": ["c"]}, "source": "pos"}),
        (("email", "amy@example.com"), {"traits": {"name": "Amy"}}),
    ]
    answers = []
    for who, body in calls:
        answer = identify(client, key, who, **body)
        stored = client.get(f"/api/v1/customers/{answer['customer']['id']}",
                            headers=bearer(key))
        assert stored.status_code == 200
        assert _comparable(answer["customer"]) == _comparable(stored.json())
        answers.append(answer)
    assert [a["created"] for a in answers] == [True, False, False, True]
    assert answers[2]["customer"]["tags"] == ["a", "b", "c"]
    assert answers[2]["customer"]["identities"][0]["source"] == "api"  # the first call's


def test_traits_that_change_nothing_write_nothing(client: TestClient, key: str,
                                                  session: Session) -> None:
    made = identify(client, key, ("pos_card", "C-1"), traits={"name": "陳大文",
                                                               "tags": ["vip"]})["customer"]
    fresh(session)
    tenant_id = session.scalars(select(Customer.tenant_id)).one()
    before = session.get_one(Customer, (tenant_id, made["id"])).updated_at
    same = identify(client, key, ("pos_card", "C-1"),
                    traits={"name": "陳大文", "tags": ["vip"], "gender": None})["customer"]
    fresh(session)
    assert session.get_one(Customer, (tenant_id, made["id"])).updated_at == before
    assert _instant(same["updated_at"]) == as_utc(before)
    changed = identify(client, key, ("pos_card", "C-1"), traits={"name": "陳小文"})["customer"]
    assert (_instant(changed["updated_at"]) or before) > as_utc(before)
    assert changed["name"] == "陳小文"


def test_a_profile_loaded_in_the_session_stays_current(session: Session,
                                                      tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    card = [IdentityIn(kind=IdentityKind.pos_card, value="C-1")]
    created = identify_service.identify(session, actor, card)
    session.commit()
    loaded = session.get_one(Customer, (tenant.id, created.customer.id))
    again = identify_service.identify(session, actor, card, Traits(name="Loaded", tags=["x"]))
    assert again.customer is loaded  # the session's own object, changed through the ORM
    assert (loaded.name, loaded.tags) == ("Loaded", ["x"])
    session.commit()
    fresh(session)
    stored = session.get_one(Customer, (tenant.id, created.customer.id))
    assert (stored.name, stored.tags) == ("Loaded", ["x"])


def test_identify_answers_the_same_profile_as_the_service(session: Session,
                                                         tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    phone = [IdentityIn(kind=IdentityKind.phone, value="0912-345-678")]
    done = identify_service.identify_profile(session, actor, phone, Traits(name="A"))
    assert done.created
    assert done.customer is None
    assert done.profile is not None
    assert (done.profile["name"], done.profile["tags"]) == ("A", [])
    session.commit()
    again = identify_service.identify_profile(session, actor, phone)
    assert (again.customer_id, again.created) == (done.customer_id, False)
    stored = session.get_one(Customer, (tenant.id, done.customer_id))
    assert again.profile == {name: getattr(stored, name)
                             for name in identify_service.PROFILE_FIELDS}


def test_the_key_is_checked_before_the_body(client: TestClient, key: str) -> None:
    url = "/api/v1/customers/identify"
    assert client.post(url, json={"identities": []}).status_code == 401
    assert client.post(url, headers=bearer("olk_wrong"), json={"x": 1}).status_code == 401
    assert client.post(url).status_code == 401
    assert client.post(url, headers=bearer(key), json={"identities": []}).status_code == 422
    # Malformed JSON is refused while the request is read, before anything else.
    malformed = client.post(url, content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "invalid_json"


def test_phones_are_remembered_and_other_identities_are_not() -> None:
    from omniloop.customers.identify import _normalize_phone, normalized
    from omniloop.customers.identities import normalize

    assert normalized(IdentityKind.phone, "0912-000-555") == normalize(
        IdentityKind.phone, "0912-000-555") == "+886912000555"
    hits = _normalize_phone.cache_info().hits
    assert normalized(IdentityKind.phone, "0912-000-555") == "+886912000555"
    assert _normalize_phone.cache_info().hits == hits + 1
    size = _normalize_phone.cache_info().currsize
    assert normalized(IdentityKind.email, " Amy@Example.COM ") == "amy@example.com"
    assert normalized(IdentityKind.device, "dev-1") == "dev-1"
    assert _normalize_phone.cache_info().currsize == size
    with pytest.raises(InvalidIdentity):
        normalized(IdentityKind.phone, "12")


def test_identify_sees_the_sessions_pending_changes(session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    made = identify_service.identify(session, actor, [IdentityIn(kind=IdentityKind.pos_card,
                                                                 value="C-1")])
    session.add(CustomerIdentity(tenant_id=tenant.id, customer_id=made.customer.id,
                                 kind=IdentityKind.device, value="dev-pending", source="x"))
    again = identify_service.identify(session, actor, [IdentityIn(kind=IdentityKind.device,
                                                                  value="dev-pending")])
    assert (again.customer.id, again.created) == (made.customer.id, False)
    session.rollback()
