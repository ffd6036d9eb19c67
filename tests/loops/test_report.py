"""The loop report against figures computed independently from the raw rows."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.customers.models import Customer, CustomerIdentity, Event, IdentityKind
from omniloop.loops.models import Purpose, Referral
from omniloop.loops.report import loop_report
from omniloop.orders.models import Order
from omniloop.tenancy.access import system_actor
from tests.loops.factories import flush, form_token_of, join, make_shop, make_touchpoint
from tests.orders.factories import make_order
from tests.tenancy.factories import fresh, make_store

ONLINE = {"line_follow", "feedback_submitted", "review_clicked", "share"}


def _survivor(session: Session, customer_id: str) -> str:
    while True:
        merged = session.scalar(select(Customer.merged_into_id).where(Customer.id == customer_id))
        if merged is None:
            return customer_id
        customer_id = merged


def test_report_matches_raw_rows(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    other_store = make_store(session, shop.tenant, code="TPE02", name="大安店")
    table = make_touchpoint(session, shop, Purpose.feedback,
                            target_url="https://maps.example/r")
    counter = make_touchpoint(session, shop, Purpose.referral, number=None,
                              store=other_store)
    # Three people scan tables; two give feedback; one only looks.
    for phone in ("0912000001", "0912000002"):
        person = TestClient(client.app)
        done = join(person, table.code, phone, rating="4")
        person.get(done)
        person.get(f"/t/{table.code}/go?" + done.split("?", 1)[1].split("&")[0])
    TestClient(client.app).get(f"/t/{table.code}")
    # One person at the other store gets a referral link and brings a friend.
    referrer = TestClient(client.app)
    done_page = referrer.get(join(referrer, counter.code, "0912000003"))
    link = done_page.text.split('data-referral-link', 1)[0].rsplit('value="', 1)[1].split('"')[0]
    path = "/" + link.split("/", 3)[3]
    friend = TestClient(client.app)
    invite = friend.get(path)
    assert friend.post(path, data={"form_token": form_token_of(invite.text),
                                   "phone": "0912000004"}).status_code == 200
    flush()
    fresh(session)
    referral = session.scalar(select(Referral))
    assert referral is not None
    make_order(session, shop.tenant, store_id=shop.store.id, customer_id=referral.friend_id,
               paid_at=utcnow().isoformat())
    # Purchasers: the first feedback giver bought, then acted (feedback is older: no).
    fresh(session)
    first = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.value == "+886912000001"))
    assert first is not None
    make_order(session, shop.tenant, store_id=shop.store.id, customer_id=first,
               paid_at=(utcnow() - timedelta(minutes=5)).isoformat())
    start, end = utcnow() - timedelta(days=1), utcnow() + timedelta(minutes=1)
    fresh(session)
    report = loop_report(session, system_actor(shop.tenant.id), start, end)

    # Independently, from the raw rows.
    fresh(session)
    events = list(session.scalars(select(Event)))
    devices = dict(session.execute(select(CustomerIdentity.value, CustomerIdentity.customer_id)
                                   .where(CustomerIdentity.kind == IdentityKind.device)).all())

    def person_of(event: Event) -> str | None:
        cid = event.customer_id or devices.get(event.properties.get("device_id", ""))
        return _survivor(session, cid) if cid else None

    scans = [e for e in events if e.type == "qr_scan"]
    cohort = {p for p in map(person_of, scans) if p}
    acting = {person_of(e) for e in events if e.type in ONLINE} | {
        referral.referrer_id}
    purchases = list(session.scalars(select(Order).where(Order.store_id.is_not(None))))
    buyers = {_survivor(session, o.customer_id) for o in purchases if o.customer_id}
    online_after = {
        _survivor(session, o.customer_id) for o in purchases if o.customer_id and any(
            person_of(e) == _survivor(session, o.customer_id) and e.type in ONLINE
            and as_utc(o.paid_at) <= as_utc(e.occurred_at) <= as_utc(o.paid_at)
            + timedelta(days=14) for e in events)}
    active = {p for p in map(person_of, events) if p}
    overall = report.overall
    assert overall.scans == len(scans) == 4  # two feedback givers, one looker, the referrer
    assert overall.identified == len(cohort) == 3
    assert overall.acted == len(cohort & acting) == 3
    assert overall.actions == {"feedback_submitted": 2, "review_clicked": 2, "referral": 1}
    assert overall.referred == 1
    assert overall.first_purchases == 1
    assert overall.purchasers == len(buyers) == 2
    assert overall.purchasers_online == len(online_after) == 1
    assert overall.offline_online_rate == 0.5
    assert overall.acquired == 1
    assert overall.active == len(active)
    assert overall.k == 1 / len(active)
    by_store = {f.store_id: f for f in report.stores}
    assert by_store[shop.store.id].referred == 0  # the referrer scanned at the other store
    assert by_store[other_store.id].referred == 1
    assert by_store[other_store.id].first_purchases == 1
