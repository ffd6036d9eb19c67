"""Refunds over HTTP: in full, by amount, by lines; exact amounts; idempotency; bad input."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.core.errors import OmniloopError
from omniloop.customers.models import Event
from omniloop.orders import refunds, service
from omniloop.orders.errors import NothingToRefund
from omniloop.orders.models import Order, OrderLine, Refund, RefundLine
from omniloop.orders.schemas import RefundIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Store, Tenant
from tests.orders.factories import NETS, TOTAL, count_rows, make_order, snapshot
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def store(session: Session, tenant: Tenant) -> Store:
    return make_store(session, tenant, code="TPE-01")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> dict[str, str]:
    return bearer(make_api_key(session, tenant, scopes=["pos"]))


@pytest.fixture
def order(session: Session, tenant: Tenant, store: Store) -> Order:
    return make_order(session, tenant, store_id=store.id,
                      identities=[{"kind": "phone", "value": "0912345678"}])


def refund(client: TestClient, key: dict[str, str], order: Order, body: dict[str, Any],
           expected: int = 201) -> dict[str, Any]:
    response = client.post(f"/api/v1/orders/{order.id}/refunds", headers=key, json=body)
    assert response.status_code == expected, response.text
    return dict(response.json())


def refused(client: TestClient, key: dict[str, str], order: Order, body: dict[str, Any],
            status: int) -> dict[str, Any]:
    response = client.post(f"/api/v1/orders/{order.id}/refunds",
                           headers={**key, "Accept-Language": "en"}, json=body)
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def current(client: TestClient, key: dict[str, str], order: Order) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/orders/{order.id}", headers=key).json())


def test_full_refund_returns_everything(client: TestClient, key: dict[str, str],
                                        session: Session, order: Order) -> None:
    made = refund(client, key, order, {"external_id": "RF-1", "reason": "客訴"})
    assert (made["amount_minor"], made["currency"], made["reason"]) == (TOTAL, "TWD", "客訴")
    assert [(line["position"], line["quantity"], line["amount_minor"])
            for line in made["lines"]] == [(1, 2, NETS[0]), (2, 1, NETS[1])]
    after = current(client, key, order)
    assert (after["refunded_minor"], after["status"]) == (TOTAL, "refunded")
    assert [line["refunded_quantity"] for line in after["lines"]] == [2, 1]
    assert [r["id"] for r in after["refunds"]] == [made["id"]]

    fresh(session)
    event = session.scalars(select(Event).where(Event.type == "refund")).one()
    assert (event.client_event_id, event.customer_id, event.store_id, event.channel) == (
        f"refund:{made['id']}", order.customer_id, order.store_id, "offline")
    assert event.properties["amount_minor"] == TOTAL
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "order.refund")).one()
    assert (entry.entity_type, entry.entity_id, entry.actor_type) == ("order", order.id,
                                                                      "api_key")
    assert entry.details["refund_id"] == made["id"]
    assert entry.details["amount_minor"] == TOTAL

    before = snapshot(session)
    error = refused(client, key, order, {"external_id": "RF-2"}, 409)
    assert error["code"] == "nothing_to_refund"
    assert snapshot(session) == before


def test_partial_by_amount_then_too_much(client: TestClient, key: dict[str, str],
                                         session: Session, order: Order) -> None:
    made = refund(client, key, order, {"external_id": "RF-1", "amount_minor": 5000})
    assert (made["amount_minor"], made["lines"]) == (5000, [])
    after = current(client, key, order)
    assert (after["refunded_minor"], after["status"]) == (5000, "partially_refunded")
    assert [line["refunded_quantity"] for line in after["lines"]] == [0, 0]

    before = snapshot(session)
    error = refused(client, key, order, {"external_id": "RF-2", "amount_minor": 25001}, 422)
    assert (error["code"], error["field"]) == ("refund_exceeds_order", "amount_minor")
    assert "25001" in error["message"]
    assert "25000" in error["message"]
    assert snapshot(session) == before

    rest = refund(client, key, order, {"external_id": "RF-3", "amount_minor": 25000})
    assert rest["amount_minor"] == 25000
    assert current(client, key, order)["status"] == "refunded"


def test_by_lines_shares_the_discounts_and_adds_up_exactly(
        client: TestClient, key: dict[str, str], order: Order) -> None:
    lines = current(client, key, order)["lines"]
    one = refund(client, key, order, {"external_id": "RF-1",
                                      "lines": [{"line_id": lines[0]["id"], "quantity": 1}]})
    assert one["amount_minor"] == NETS[0] // 2  # 11363: half of 227.27, rounded down
    other = refund(client, key, order, {"external_id": "RF-2",
                                        "lines": [{"position": 1, "quantity": 1}]})
    assert other["amount_minor"] == NETS[0] - NETS[0] // 2  # the last unit takes the rest
    after = current(client, key, order)
    assert (after["refunded_minor"], after["status"]) == (NETS[0], "partially_refunded")
    assert [line["refunded_quantity"] for line in after["lines"]] == [2, 0]
    cake = refund(client, key, order, {"external_id": "RF-3",
                                       "lines": [{"position": 2, "quantity": 1}]})
    assert cake["amount_minor"] == NETS[1]
    assert current(client, key, order)["refunded_minor"] == TOTAL


def test_line_refund_after_an_amount_refund_stops_at_the_total(
        client: TestClient, key: dict[str, str], session: Session, order: Order) -> None:
    refund(client, key, order, {"external_id": "RF-1", "amount_minor": 20000})
    capped = refund(client, key, order, {"external_id": "RF-2",
                                         "lines": [{"position": 1, "quantity": 2}]})
    assert capped["amount_minor"] == TOTAL - 20000
    assert [line["amount_minor"] for line in capped["lines"]] == [TOTAL - 20000]
    after = current(client, key, order)
    assert (after["refunded_minor"], after["status"]) == (TOTAL, "refunded")
    before = snapshot(session)
    error = refused(client, key, order, {"external_id": "RF-3",
                                         "lines": [{"position": 2, "quantity": 1}]}, 409)
    assert error["code"] == "nothing_to_refund"
    assert snapshot(session) == before


def test_full_refund_after_partial_ones_takes_the_rest(
        client: TestClient, key: dict[str, str], order: Order) -> None:
    refund(client, key, order, {"external_id": "RF-1", "lines": [{"position": 1,
                                                                   "quantity": 1}]})
    refund(client, key, order, {"external_id": "RF-2", "amount_minor": 100})
    rest = refund(client, key, order, {"external_id": "RF-3"})
    assert rest["amount_minor"] == TOTAL - NETS[0] // 2 - 100
    assert [(line["position"], line["quantity"]) for line in rest["lines"]] == [(1, 1), (2, 1)]
    assert sum(line["amount_minor"] for line in rest["lines"]) == rest["amount_minor"]
    after = current(client, key, order)
    assert (after["refunded_minor"], after["status"]) == (TOTAL, "refunded")
    assert [line["refunded_quantity"] for line in after["lines"]] == [2, 1]


def test_a_refund_retry_returns_the_first_and_changes_nothing(
        client: TestClient, key: dict[str, str], session: Session, order: Order) -> None:
    body = {"external_id": "RF-1", "lines": [{"position": 1, "quantity": 1}],
            "reason": "return"}
    first = refund(client, key, order, body)
    before = snapshot(session)
    again = refund(client, key, order, body, expected=200)
    assert again == first
    assert snapshot(session) == before
    error = refused(client, key, order, {**body, "reason": "other"}, 409)
    assert (error["code"], error["field"]) == ("refund_conflict", "external_id")
    error = refused(client, key, order, {"external_id": "RF-1", "amount_minor": 1}, 409)
    assert error["code"] == "refund_conflict"
    assert snapshot(session) == before
    assert count_rows(session, Refund) == 1
    assert count_rows(session, Event, Event.type == "refund") == 1
    assert count_rows(session, AuditEntry, AuditEntry.action == "order.refund") == 1
    # The same key on another order is another refund.
    other = make_order(session, session.get_one(Tenant, order.tenant_id),
                       store_id=order.store_id)
    assert refund(client, key, other, body)["id"] != first["id"]


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"amount_minor": 30001}, 422, "refund_exceeds_order", "amount_minor"),
    ({"amount_minor": 0}, 422, "validation_error", "amount_minor"),
    ({"amount_minor": -5}, 422, "validation_error", "amount_minor"),
    ({"amount_minor": 100, "lines": [{"position": 1, "quantity": 1}]}, 422,
     "refund_amount_or_lines", "amount_minor"),
    ({"lines": [{"position": 1, "quantity": 3}]}, 422, "refund_exceeds_line",
     "lines.0.quantity"),
    ({"lines": [{"position": 2, "quantity": 1}, {"position": 1, "quantity": 3}]}, 422,
     "refund_exceeds_line", "lines.1.quantity"),
    ({"lines": [{"position": 1, "quantity": 0}]}, 422, "validation_error", "lines.0.quantity"),
    ({"lines": [{"position": 3, "quantity": 1}]}, 422, "order_line_not_found",
     "lines.0.position"),
    ({"lines": [{"line_id": "01JNOSUCHLINE0000000000000", "quantity": 1}]}, 422,
     "order_line_not_found", "lines.0.line_id"),
    ({"lines": [{"quantity": 1}]}, 422, "line_reference", "lines.0.line_id"),
    ({"lines": [{"position": 1, "quantity": 1}, {"position": 1, "quantity": 1}]}, 422,
     "duplicate_refund_line", "lines.1"),
    ({"lines": []}, 422, "validation_error", "lines"),
    ({"refunded_at": "2026-11-01T00:00:00+08:00"}, 422, "refunded_at_invalid",
     "refunded_at"),
    ({"refunded_at": "2999-01-01T00:00:00+08:00"}, 422, "refunded_at_invalid",
     "refunded_at"),
    ({"note": "x"}, 422, "unknown_field", "note"),
])
def test_bad_refunds_name_the_field_and_write_nothing(
        client: TestClient, key: dict[str, str], session: Session, order: Order,
        body: dict[str, Any], status: int, code: str, field: str) -> None:
    before = snapshot(session)
    error = refused(client, key, order, {"external_id": "RF-1", **body}, status)
    assert error["code"] == code
    assert field in [error.get("field")] + [d["field"] for d in error.get("details", [])]
    assert snapshot(session) == before


def test_refunds_of_orders_out_of_reach_are_404(client: TestClient, key: dict[str, str],
                                                session: Session, tenant: Tenant,
                                                order: Order) -> None:
    rival = make_tenant(session, slug="rival")
    rival_order = make_order(session, rival)
    other_store = make_store(session, tenant, code="TPE-02")
    bound = bearer(make_api_key(session, tenant, scopes=["pos"], store=other_store))
    online = make_order(session, tenant)
    before = snapshot(session)
    assert refused(client, key, rival_order, {"external_id": "RF-1"}, 404)["code"] == (
        "order_not_found")
    assert refused(client, bound, order, {"external_id": "RF-1"}, 404)["code"] == (
        "order_not_found")
    assert refused(client, bound, online, {"external_id": "RF-1"}, 404)["code"] == (
        "order_not_found")
    assert snapshot(session) == before


def test_refunded_at_is_kept(client: TestClient, key: dict[str, str], order: Order) -> None:
    made = refund(client, key, order, {"external_id": "RF-1", "amount_minor": 100,
                                       "refunded_at": "2026-11-22T15:00:00"})
    assert made["refunded_at"] == "2026-11-22T07:00:00Z"


def test_any_sequence_of_refunds_adds_up_to_the_total_exactly(
        session: Session, tenant: Tenant) -> None:
    """Random refunds (amounts, lines, both) never pass the total; a final full refund
    lands on it exactly, and every line's units are all returned."""
    actor = system_actor(tenant.id)
    rng = random.Random(20261125)
    made = Counter[str]()
    for round_ in range(25):
        units = [(rng.randint(1, 7), rng.choice([0, 1, 99, 3333, 12000, 45678]))
                 for _ in range(rng.randint(1, 5))]
        lines = [{"sku": f"SKU-{i}", "quantity": quantity, "unit_price_minor": unit_price}
                 for i, (quantity, unit_price) in enumerate(units)]
        subtotal = sum(quantity * unit_price for quantity, unit_price in units)
        order = make_order(session, tenant, lines=lines,
                           discount_minor=rng.randint(0, subtotal))
        for step in range(rng.randint(0, 6)):
            current_order = service.load_order(session, actor, order.id)
            line = rng.choice(current_order.lines)
            left = line.quantity - line.refunded_quantity
            body: dict[str, Any] = {"external_id": f"R{round_}-{step}"}
            if rng.random() < 0.3:
                body["amount_minor"] = rng.randint(1, max(1, order.total_minor // 4))
            elif left:
                body["lines"] = [{"line_id": line.id, "quantity": rng.randint(1, left)}]
            try:
                refunds.refund(session, actor, order.id, RefundIn.model_validate(body))
                session.commit()
                made["amount" if "amount_minor" in body else "lines" if "lines" in body
                     else "full"] += 1
            except OmniloopError as exc:
                made[exc.code] += 1
                session.rollback()
            current_order = service.load_order(session, actor, order.id)
            assert 0 <= current_order.refunded_minor <= current_order.total_minor
        remaining = service.load_order(session, actor, order.id)
        left = remaining.total_minor - remaining.refunded_minor
        in_full = RefundIn.model_validate({"external_id": f"R{round_}-all"})
        if left:
            everything, _ = refunds.refund(session, actor, order.id, in_full)
            session.commit()
            assert everything.amount_minor == left
            assert sum(line.amount_minor for line in everything.lines) == left
        else:
            with pytest.raises(NothingToRefund):
                refunds.refund(session, actor, order.id, in_full)
            session.rollback()
        final = service.load_order(session, actor, order.id)
        assert final.refunded_minor == final.total_minor
        if left:
            assert final.status == "refunded"
            assert all(line.refunded_quantity == line.quantity for line in final.lines)
        refund_rows = list(session.scalars(select(Refund).where(Refund.order_id == order.id)))
        assert sum(r.amount_minor for r in refund_rows) == final.total_minor
        for row in session.scalars(select(RefundLine).where(
                RefundLine.refund_id.in_([r.id for r in refund_rows]))):
            assert row.amount_minor >= 0
        session.rollback()
    # The sequences did exercise every kind of refund and the refusals.
    assert made["amount"] >= 5, made
    assert made["lines"] >= 10, made
    assert made["refund_exceeds_order"] + made["nothing_to_refund"] >= 1, made
    assert count_rows(session, OrderLine) > 0
