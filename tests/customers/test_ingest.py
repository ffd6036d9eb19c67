"""Event ingestion: batches, idempotency, anonymous profiles, timelines across merges, bad
input writing nothing, and concurrent batches racing for the same ids."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select, update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Database, Session
from omniloop.core.ids import new_id, new_ids
from omniloop.customers import identify as identify_service
from omniloop.customers.errors import BatchSizeInvalid
from omniloop.customers.event_types import EVENT_TYPES
from omniloop.customers.ingest import ingest_events
from omniloop.customers.ingest_schemas import EventBatchIn
from omniloop.customers.models import Customer, CustomerIdentity, CustomerMerge, Event, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.customers.factories import TAIPEI, event_json, make_customer
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant
from tests.tenancy.test_concurrency import race

LINE_ID = "U" + "0f" * 16


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> str:
    return make_api_key(session, tenant, scopes=["ingest"])


def post(client: TestClient, key: str, events: list[dict[str, Any]]) -> Response:
    return client.post("/api/v1/events", headers=bearer(key), json={"events": events})


def ingested(client: TestClient, key: str, events: list[dict[str, Any]]) -> dict[str, int]:
    response = post(client, key, events)
    assert response.status_code == 201, response.text
    return dict(response.json())


def counts(session: Session) -> tuple[int, int, int]:
    """Rows in events, customers and customer_identities."""
    fresh(session)

    def rows(model: type[Event | Customer | CustomerIdentity]) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    return rows(Event), rows(Customer), rows(CustomerIdentity)


def stored(session: Session) -> dict[str, Event]:
    fresh(session)
    return {e.client_event_id: e for e in session.scalars(select(Event))}


def timeline(client: TestClient, key: str, customer_id: str,
             **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/customers/{customer_id}/events", headers=bearer(key),
                          params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_identities_of_every_kind_land_on_their_profiles(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    store = make_store(session, tenant, code="TPE-01")
    result = ingested(client, key, [
        event_json("e1", type="qr_scan", identity=("phone", "0912-345-678"),
                   store_code="tpe-01", source="poster", campaign_id="CAMP1",
                   properties={"table": 7, "note": "窗邊"}),
        event_json("e2", type="coupon_claimed", identity=("phone", "+886 912 345 678"),
                   source="line"),
        event_json("e3", identity=("phone", "0912345678"), source="web"),
        event_json("e4", type="line_follow", identity=("line", LINE_ID), source="line"),
        event_json("e5", type="link_click", identity=("email", " Amy@Example.COM "),
                   source="email"),
        event_json("e6", type="purchase", identity=("pos_card", "CARD-0001"),
                   store_id=store.id, source="pos"),
        event_json("e7", identity=("device", "dev-abc"), source="web"),
        event_json("e8", type="store_visit", identity=("device", "dev-abc"),
                   channel="online", source="wifi"),
        event_json("e9", type="table_call", channel="offline", identity=("ecommerce", "ec-1"),
                   store_id=store.id, source="pos"),
    ])
    assert result == {"accepted": 9, "duplicates": 0, "created_profiles": 6}
    events = stored(session)
    phone_owner = events["e1"].customer_id
    assert phone_owner is not None
    assert {events[i].customer_id for i in ("e1", "e2", "e3")} == {phone_owner}
    assert len({events[i].customer_id for i in ("e1", "e4", "e5", "e6", "e7", "e9")}) == 6
    assert events["e7"].customer_id == events["e8"].customer_id
    identities = {(i.kind, i.value): i for i in session.scalars(select(CustomerIdentity))}
    assert set(identities) == {
        (IdentityKind.phone, "+886912345678"), (IdentityKind.line, LINE_ID),
        (IdentityKind.email, "amy@example.com"), (IdentityKind.pos_card, "CARD-0001"),
        (IdentityKind.device, "dev-abc"), (IdentityKind.ecommerce, "ec-1")}
    assert identities[(IdentityKind.phone, "+886912345678")].source == "poster"
    assert identities[(IdentityKind.phone, "+886912345678")].customer_id == phone_owner
    first = events["e1"]
    assert (first.type, first.channel, first.source, first.store_id, first.campaign_id,
            first.properties) == ("qr_scan", "offline", "poster", store.id, "CAMP1",
                                  {"table": 7, "note": "窗邊"})
    assert (events["e2"].channel, events["e8"].channel, events["e9"].channel) == (
        "online", "online", "offline")  # the catalogue's default, or what was sent
    assert events["e9"].type == "table_call"  # custom types are kept as sent
    sent_at = datetime.fromisoformat(event_json("x")["occurred_at"])
    assert abs(as_utc(first.occurred_at) - sent_at) < timedelta(seconds=5)
    assert all(not c.name and c.merged_into_id is None for c in session.scalars(select(Customer)))


def test_events_on_a_known_customer_id_and_identity(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    amy = make_customer(session, tenant, ("phone", "0912-345-678"), name="林小美")
    result = ingested(client, key, [
        event_json("a1", customer_id=amy),
        event_json("a2", identity=("phone", "0912 345 678")),
    ])
    assert result == {"accepted": 2, "duplicates": 0, "created_profiles": 0}
    assert {e.customer_id for e in stored(session).values()} == {amy}
    assert counts(session) == (2, 1, 1)


def test_a_retried_batch_changes_nothing(client: TestClient, key: str,
                                         session: Session) -> None:
    batch = [event_json(f"r{i}", identity=("device", f"dev-{i % 3}")) for i in range(10)]
    assert ingested(client, key, batch) == {"accepted": 10, "duplicates": 0,
                                            "created_profiles": 3}
    before = counts(session)
    rows_before = {k: (e.id, e.customer_id, e.occurred_at) for k, e in stored(session).items()}
    assert ingested(client, key, batch) == {"accepted": 0, "duplicates": 10,
                                            "created_profiles": 0}
    assert counts(session) == before == (10, 3, 3)
    assert {k: (e.id, e.customer_id, e.occurred_at)
            for k, e in stored(session).items()} == rows_before
    # A retry that adds new events stores just those.
    more = batch + [event_json("r10", identity=("device", "dev-new"))]
    assert ingested(client, key, more) == {"accepted": 1, "duplicates": 10,
                                           "created_profiles": 1}
    assert counts(session) == (11, 4, 4)


def test_duplicates_inside_one_batch_first_wins(client: TestClient, key: str,
                                                session: Session) -> None:
    result = ingested(client, key, [
        event_json("same", type="qr_scan", identity=("device", "dev-1")),
        event_json("other", identity=("device", "dev-1")),
        event_json("same", type="share", identity=("device", "dev-2")),
    ])
    assert result == {"accepted": 2, "duplicates": 1, "created_profiles": 1}
    events = stored(session)
    assert events["same"].type == "qr_scan"
    # The duplicate's new identity was not given a profile: nothing of it was stored.
    assert counts(session) == (2, 1, 1)


def test_client_ids_are_per_tenant(client: TestClient, key: str, session: Session) -> None:
    other_key = make_api_key(session, make_tenant(session, slug="rival"), scopes=["ingest"])
    batch = [event_json("shared-id", identity=("device", "dev-1"))]
    assert ingested(client, key, batch)["accepted"] == 1
    assert ingested(client, other_key, batch) == {"accepted": 1, "duplicates": 0,
                                                  "created_profiles": 1}
    assert counts(session) == (2, 2, 2)


def test_device_events_join_the_person_through_identify_and_merges(
        client: TestClient, session: Session, tenant: Tenant) -> None:
    key = make_api_key(session, tenant, scopes=["admin"])
    amy = make_customer(session, tenant, ("phone", "0912-345-678"), name="林小美")
    ingested(client, key, [
        event_json("d1", type="ad_click", minutes_ago=30, identity=("device", "dev-A")),
        event_json("d2", type="page_view", minutes_ago=20, identity=("device", "dev-A")),
        event_json("p1", type="store_visit", minutes_ago=10, identity=("phone", "0912345678")),
    ])
    events = stored(session)
    anonymous = events["d1"].customer_id
    assert anonymous is not None
    assert anonymous != amy
    assert [e["client_event_id"] for e in timeline(client, key, amy)["events"]] == ["p1"]
    assert [e["client_event_id"] for e in timeline(client, key, anonymous)["events"]] == [
        "d2", "d1"]

    fresh(session)
    joined = identify_service.identify(session, system_actor(tenant.id), [
        IdentityIn(kind=IdentityKind.phone, value="0912-345-678"),
        IdentityIn(kind=IdentityKind.device, value="dev-A")])
    session.commit()
    assert joined.customer.id == amy
    assert joined.merged == [anonymous]

    seen = timeline(client, key, amy)
    assert seen["customer_id"] == amy
    assert [e["client_event_id"] for e in seen["events"]] == ["p1", "d2", "d1"]
    # The events kept the profile they arrived on; the timeline follows the merge.
    assert [e["customer_id"] for e in seen["events"]] == [amy, anonymous, anonymous]
    assert timeline(client, key, anonymous) == seen  # a merged-away id answers as its survivor
    # The device now belongs to Amy, so its new events arrive on her profile.
    ingested(client, key, [event_json("d3", minutes_ago=1, identity=("device", "dev-A"))])
    assert stored(session)["d3"].customer_id == amy

    # Two identified profiles merged: both histories show on the survivor.
    bob = make_customer(session, tenant, ("pos_card", "CARD-9"), name="王大明")
    ingested(client, key, [event_json("b1", type="purchase", minutes_ago=15,
                                      identity=("pos_card", "CARD-9"))])
    fresh(session)
    identify_service.identify(session, system_actor(tenant.id), [
        IdentityIn(kind=IdentityKind.pos_card, value="CARD-9"),
        IdentityIn(kind=IdentityKind.phone, value="0912345678")])
    session.commit()
    assert [e["client_event_id"] for e in timeline(client, key, amy)["events"]] == [
        "d3", "p1", "b1", "d2", "d1"]
    assert [e["client_event_id"] for e in timeline(client, key, bob)["events"]] == [
        "d3", "p1", "b1", "d2", "d1"]

    # Undoing the later merge gives Bob his history back.
    fresh(session)
    merge = session.scalars(select(CustomerMerge).where(CustomerMerge.merged_id == bob)).one()
    identify_service.undo_merge(session, system_actor(tenant.id), merge.id)
    session.commit()
    assert [e["client_event_id"] for e in timeline(client, key, bob)["events"]] == ["b1"]
    assert [e["client_event_id"] for e in timeline(client, key, amy)["events"]] == [
        "d3", "p1", "d2", "d1"]


def test_timeline_pages_through_events_sharing_one_time(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    amy = make_customer(session, tenant, ("phone", "0912-345-678"))
    at = "2026-11-20T09:30:00+08:00"
    ingested(client, key, [{"id": f"t{i}", "type": "page_view", "occurred_at": at,
                            "customer_id": amy} for i in range(5)]
             + [event_json("latest", customer_id=amy, minutes_ago=0)])
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(4):
        page = timeline(client, key, amy, **params)
        seen += [e["client_event_id"] for e in page["events"]]
        if page["next_before"] is None:
            break
        params = {"limit": 2, "before": page["next_before"],
                  "before_id": page["next_before_id"]}
    assert seen[0] == "latest"
    assert sorted(seen) == sorted(["latest", *(f"t{i}" for i in range(5))])
    first = timeline(client, key, amy, limit=6)["events"]
    assert [e["client_event_id"] for e in first] == seen
    assert datetime.fromisoformat(first[-1]["occurred_at"]) == datetime(
        2026, 11, 20, 1, 30, tzinfo=UTC)


def test_timeline_of_another_tenants_customer_is_404(
        client: TestClient, key: str, session: Session) -> None:
    theirs = make_customer(session, make_tenant(session, slug="rival"), ("phone", "0912345678"))
    response = client.get(f"/api/v1/customers/{theirs}/events", headers=bearer(key))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"


def test_catalogue_is_served_and_documented(client: TestClient, key: str) -> None:
    response = client.get("/api/v1/events/types", headers={**bearer(key),
                                                             "Accept-Language": "en"})
    assert response.status_code == 200
    catalogue = {t["name"]: t for t in response.json()}
    assert set(catalogue) == set(EVENT_TYPES)
    assert catalogue["qr_scan"] == {"name": "qr_scan", "label": "Scanned a QR code",
                                    "channel": "offline"}
    zh = client.get("/api/v1/events/types", headers=bearer(key)).json()
    assert {t["name"]: t["label"] for t in zh}["qr_scan"] != "Scanned a QR code"
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/events"]["post"]
    assert all(f"`{name}`" in operation["description"] for name in EVENT_TYPES)
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    event = body["properties"]["events"]["items"]
    assert body["properties"]["events"]["maxItems"] == 1000
    assert {"id", "type", "occurred_at"} <= set(event["required"])
    assert "device" in event["properties"]["identity"]["anyOf"][0]["properties"]["kind"]["enum"]


def test_ingest_needs_the_ingest_scope(client: TestClient, session: Session,
                                      tenant: Tenant) -> None:
    pos_key = make_api_key(session, tenant, scopes=["pos"])
    response = post(client, pos_key, [event_json("x", identity=("device", "d"))])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_required"
    # Without a key, even a broken body is answered 401: the key is checked first.
    response = client.post("/api/v1/events", content=b'{"events": [')
    assert response.status_code == 401
    assert counts(session) == (0, 0, 0)


def test_store_bound_key_only_its_store(client: TestClient, session: Session,
                                        tenant: Tenant) -> None:
    mine, other = make_store(session, tenant, code="TPE-01"), make_store(session, tenant,
                                                                         code="TPE-02")
    key = make_api_key(session, tenant, scopes=["ingest"], store=mine)
    ok = [event_json("ok", identity=("device", "dev-1"), store_code="tpe-01")]
    for field, value in (("store_id", other.id), ("store_code", "TPE-02"),
                         ("store_id", "01NOSUCHSTORE0000000000000")):
        bad = {**event_json("bad", identity=("device", "dev-2")), field: value}
        response = post(client, key, [*ok, bad])
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("store_not_found", f"events.1.{field}")
        assert counts(session) == (0, 0, 0)
    assert ingested(client, key, ok)["accepted"] == 1
    assert stored(session)["ok"].store_id == mine.id


def test_another_tenants_store_is_404(client: TestClient, key: str, session: Session) -> None:
    foreign = make_store(session, make_tenant(session, slug="rival"), code="TPE-01")
    response = post(client, key, [event_json("x", identity=("device", "d"),
                                             store_id=foreign.id)])
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "events.0.store_id"
    assert counts(session) == (0, 0, 0)


def test_another_tenants_customer_is_404_naming_the_field(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    mine = make_customer(session, tenant, ("phone", "0912345678"))
    theirs = make_customer(session, make_tenant(session, slug="rival"), ("phone", "0912345678"))
    before = counts(session)
    response = post(client, key, [event_json("a", customer_id=mine),
                                  event_json("b", identity=("device", "new-device")),
                                  event_json("c", customer_id=theirs)])
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("customer_not_found", "events.2.customer_id")
    assert counts(session) == before


def test_events_for_an_erased_customer_are_refused(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    gone = make_customer(session, tenant, ("phone", "0912345678"))
    fresh(session)
    session.execute(update(Customer).where(Customer.id == gone).values(erased_at=utcnow()))
    session.commit()
    before = counts(session)
    response = post(client, key, [event_json("a", identity=("device", "d1")),
                                  event_json("b", customer_id=gone)])
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("customer_erased", "events.1.customer_id")
    assert counts(session) == before


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decoded(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_batch_ids_have_the_layout_of_core_ids() -> None:
    before = new_id()
    ids = new_ids(500)
    after = new_id()
    assert len(set(ids)) == 500
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in ids)
    # The same 48-bit millisecond on top, so they sort with ids made one by one.
    assert all(before[:10] <= i[:10] <= after[:10] for i in ids)
    assert abs((_decoded(ids[0]) >> 80) - time.time() * 1000) < 60_000
    assert len({_decoded(i) & (2 ** 80 - 1) for i in ids}) == 500


def _valid() -> list[dict[str, Any]]:
    return [event_json("ok-1", identity=("device", "dev-ok")),
            event_json("ok-2", identity=("phone", "0912-345-678"))]


@pytest.mark.parametrize(("bad", "status", "code", "field"), [
    ({"identity": {"kind": "fax", "value": "02-1234"}}, 422, "validation_error",
     "events.2.identity.kind"),
    ({"identity": {"kind": "phone", "value": "12ab"}}, 422, "invalid_identity",
     "events.2.identity.value"),
    ({"identity": {"kind": "email", "value": "amy@"}}, 422, "invalid_identity",
     "events.2.identity.value"),
    ({"occurred_at": "2026-11-20T09:30:00"}, 422, "validation_error", "events.2.occurred_at"),
    ({"occurred_at": "yesterday"}, 422, "validation_error", "events.2.occurred_at"),
    ({"occurred_at": "in 6 minutes"}, 422, "event_in_future", "events.2.occurred_at"),
    ({"occurred_at": "in 4 minutes"}, 201, "", ""),
    ({"type": "Page View"}, 422, "event_type_invalid", "events.2.type"),
    ({"type": "x" * 49}, 422, "validation_error", "events.2.type"),
    ({"type": "table_call"}, 422, "event_channel_required", "events.2.channel"),
    ({"channel": "phone"}, 422, "validation_error", "events.2.channel"),
    ({"id": ""}, 422, "validation_error", "events.2.id"),
    ({"id": "x" * 65}, 422, "validation_error", "events.2.id"),
    ({"source": "s" * 33}, 422, "validation_error", "events.2.source"),
    ({"properties": {"blob": "x" * 8200}}, 422, "event_properties_too_large",
     "events.2.properties"),
    ({"properties": ["not", "an", "object"]}, 422, "validation_error", "events.2.properties"),
    ({"customer_id": "01NOSUCHCUSTOMER0000000000"}, 422, "event_customer_required",
     "events.2.customer_id"),
    ({"identity": None}, 422, "event_customer_required", "events.2.customer_id"),
    ({"store_id": "S1", "store_code": "S1"}, 422, "event_store_ambiguous",
     "events.2.store_code"),
    ({"colour": "red"}, 422, "unknown_field", "events.2.colour"),
])
def test_a_bad_event_rejects_the_batch_naming_its_field(
        client: TestClient, key: str, session: Session, tenant: Tenant, bad: dict[str, Any],
        status: int, code: str, field: str) -> None:
    make_customer(session, tenant, ("device", "dev-known"))
    before = counts(session)
    if bad.get("occurred_at", "").startswith("in "):
        minutes = int(bad["occurred_at"].split()[1])
        bad = {"occurred_at": (utcnow() + timedelta(minutes=minutes)).isoformat()}
    event = {**event_json("bad", identity=("device", "dev-new")), **bad}
    response = post(client, key, [*_valid(), event])
    assert response.status_code == status, response.text
    if status == 201:  # the control case: the same batch, nothing wrong with it
        assert counts(session) == (before[0] + 3, before[1] + 3, before[2] + 3)
        return
    error = response.json()["error"]
    assert error["code"] == code
    fields = [error.get("field")] + [d["field"] for d in error.get("details", [])]
    assert field in fields
    assert counts(session) == before


def test_malformed_bodies_are_refused(client: TestClient, key: str, session: Session) -> None:
    headers = {**bearer(key), "Content-Type": "application/json"}
    for body, status, code in ((b'{"events": [', 400, "invalid_json"), (b"", 400, "invalid_json"),
                               (b"[]", 422, "validation_error"),
                               (b'{"events": "x"}', 422, "validation_error")):
        response = client.post("/api/v1/events", headers=headers, content=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert counts(session) == (0, 0, 0)


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_1_to_1000(client: TestClient, key: str, session: Session,
                                 size: int) -> None:
    response = post(client, key, [event_json(f"e{i}", identity=("device", f"d{i}"))
                                  for i in range(size)])
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "events"
    assert counts(session) == (0, 0, 0)
    full = ingested(client, key, [event_json(f"e{i}", identity=("device", f"d{i % 10}"))
                                  for i in range(1000)])
    assert full == {"accepted": 1000, "duplicates": 0, "created_profiles": 10}


def test_service_refuses_batches_out_of_size(session: Session, tenant: Tenant) -> None:
    events = EventBatchIn.model_validate({"events": [
        event_json(f"e{i}", identity=("device", "d")) for i in range(1000)]}).events
    with pytest.raises(BatchSizeInvalid, match="between 1 and 1000") as caught:
        ingest_events(session, system_actor(tenant.id), events + events[:1])
    assert caught.value.field == "events"
    with pytest.raises(BatchSizeInvalid):
        ingest_events(session, system_actor(tenant.id), [])


def test_concurrent_overlapping_batches_store_everything_once(
        database: Database, session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    workers, shared, own = 6, 60, 25
    devices = [f"dev-shared-{j}" for j in range(15)]

    def batch(index: int) -> EventBatchIn:
        events = [event_json(f"shared-{j}", identity=("device", devices[j % len(devices)]))
                  for j in range(shared)]
        events += [event_json(f"w{index}-{j}", identity=(
            "device", devices[(j + index) % len(devices)] if j % 2 else f"dev-own-{index}"))
            for j in range(own)]
        random.Random(index).shuffle(events)  # each writer meets the rows in its own order
        return EventBatchIn.model_validate({"events": events})

    batches = [batch(i) for i in range(workers)]

    def ingest(index: int) -> str:
        with database.unit_of_work() as uow:
            result = ingest_events(uow, actor, batches[index].events)
        return f"{result.accepted} {result.duplicates} {result.created_profiles}"

    outcomes = race(workers, ingest)
    assert not [o for o in outcomes if not o[0].isdigit()], outcomes
    totals = [0, 0, 0]
    for outcome, times in outcomes.items():
        for position, value in enumerate(outcome.split()):
            totals[position] += int(value) * times
    distinct_ids = shared + workers * own
    distinct_devices = len(devices) + workers
    assert totals == [distinct_ids, workers * (shared + own) - distinct_ids, distinct_devices]

    fresh(session)
    client_ids = list(session.scalars(select(Event.client_event_id)))
    assert len(client_ids) == len(set(client_ids)) == distinct_ids
    owners = {i.value: i.customer_id for i in session.scalars(select(CustomerIdentity))}
    assert len(owners) == distinct_devices
    assert session.scalar(select(func.count()).select_from(Customer)) == distinct_devices
    by_id = {e.client_event_id: e.customer_id for e in session.scalars(select(Event))}
    for batch_in in batches:
        for event in batch_in.events:
            identity = event.get("identity")
            assert identity is not None
            assert by_id[event["id"]] == owners[identity["value"]], event["id"]


def test_store_bound_key_sees_only_its_stores_events_on_the_timeline(
        client: TestClient, session: Session) -> None:
    from omniloop.customers.events import record_event
    from omniloop.tenancy.access import system_actor
    from tests.tenancy.factories import bearer, make_api_key, make_store, make_tenant

    tenant = make_tenant(session)
    mine = make_store(session, tenant, code="MINE")
    other = make_store(session, tenant, code="OTHER")
    admin = make_api_key(session, tenant)
    person = client.post("/api/v1/customers/identify", headers=bearer(admin), json={
        "identities": [{"kind": "pos_card", "value": "C-1"}]}).json()["customer"]["id"]
    actor = system_actor(tenant.id)
    for index, store in enumerate((mine, other, None)):
        record_event(session, actor, client_event_id=f"t{index}", type="store_visit",
                     channel="offline", customer_id=person,
                     store_id=store.id if store else None)
    session.commit()
    pos = make_api_key(session, tenant, scopes=["pos"], store=mine)
    seen = client.get(f"/api/v1/customers/{person}/events", headers=bearer(pos))
    assert seen.status_code == 200, seen.text
    assert [e["store_id"] for e in seen.json()["events"]] == [mine.id]
    everything = client.get(f"/api/v1/customers/{person}/events", headers=bearer(admin))
    assert len(everything.json()["events"]) == 3


def test_batch_ids_are_in_ascending_order() -> None:
    ids = new_ids(1000)
    assert ids == sorted(ids)  # rows go in at the end of the primary key's index


def test_the_key_is_checked_before_the_body_is_read(client: TestClient, key: str) -> None:
    for body in (b"{", b'{"events": []}', b"[]"):
        response = client.post("/api/v1/events", content=body,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 401, response.text
    answer = client.post("/api/v1/events", content=b"{", headers={
        **bearer(key), "Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_json")


def test_sqlite_write_connection_settings(database: Database) -> None:
    """The write connection's WAL auto-checkpoint and page cache, which batch ingestion
    needs (docs/benchmarks.md); read connections keep SQLite's default cache."""
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite settings")
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -65_536
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with database.read_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -2_000


def test_the_batch_is_left_in_utc_and_kinds_as_values(session: Session, tenant: Tenant) -> None:
    """What ingest_events documents doing to the events it was given (the same instants),
    and what the schema gives for an identity's kind."""
    sent = datetime(2026, 1, 2, 11, 30, tzinfo=UTC).astimezone(TAIPEI)
    batch = EventBatchIn.model_validate({"events": [
        {"id": "utc-1", "type": "qr_scan", "occurred_at": sent.isoformat(),
         "identity": {"kind": "phone", "value": "0912-345-678"}}]})
    identity = batch.events[0].get("identity")
    assert identity is not None
    assert type(identity["kind"]) is str
    assert identity["kind"] == "phone"
    result = ingest_events(session, system_actor(tenant.id), batch.events)
    session.commit()
    assert result.accepted == 1
    assert batch.events[0]["occurred_at"] == sent
    assert batch.events[0]["occurred_at"].utcoffset() == timedelta(0)
    stored = session.scalars(select(Event).where(Event.client_event_id == "utc-1")).one()
    assert as_utc(stored.occurred_at) == sent
