"""The loop through HTTP: scan, join, feedback, referral, redemption, qualification."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.campaigns.models import Coupon
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.customers.models import CustomerIdentity, Event, IdentityKind
from omniloop.loops import touchpoints as tp_service
from omniloop.loops.feedback import issue_receipt
from omniloop.loops.models import Feedback, Purpose, RecoveryTask, Referral, ReferralStatus
from omniloop.loyalty.ledger import balance_of
from omniloop.tenancy.access import system_actor
from tests.loops.factories import flush, form_token_of, join, make_shop, make_touchpoint
from tests.orders.factories import make_order
from tests.tenancy.factories import bearer, fresh, make_api_key


def _events(session: Session, type_: str) -> list[Event]:
    fresh(session)
    return list(session.scalars(select(Event).where(Event.type == type_)))


def test_scan_is_recorded_with_the_device_and_joins_the_profile(client: TestClient,
                                                                session: Session) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop, Purpose.membership, number=7, reward_points=20)
    page = client.get(f"/t/{table.code}")
    assert page.status_code == 200
    assert "ol_device" in page.cookies
    assert "20" in page.text
    assert "data-disclosure" in page.text
    flush()  # (the recorder's own thread may have written it already: the same)
    (scan,) = _events(session, "qr_scan")
    assert scan.store_id == shop.store.id
    assert scan.customer_id is None
    assert scan.properties["touchpoint_id"] == table.id
    device = scan.properties["device_id"]
    assert device == client.cookies.get("ol_device")
    answer = client.post(f"/t/{table.code}", data={"form_token": form_token_of(page.text),
                                                   "phone": "0912 345 678"},
                         follow_redirects=False)
    assert answer.status_code == 303
    fresh(session)
    owner = session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.kind == IdentityKind.device, CustomerIdentity.value == device))
    assert owner is not None
    assert balance_of(session, shop.tenant.id, owner) == 20
    # A second scan from the same browser is resolved to the profile when written.
    client.get(f"/t/{table.code}")
    flush()
    later = [e for e in _events(session, "qr_scan") if e.customer_id is not None]
    assert [e.customer_id for e in later] == [owner]
    # Joining twice (another table, same person) does not give the join reward twice.
    join(client, table.code, "0912 345 678")
    fresh(session)
    assert balance_of(session, shop.tenant.id, owner) == 20


def test_unknown_and_disabled_codes_get_a_friendly_page(client: TestClient,
                                                        session: Session) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop)
    for path in ("/t/NOSUCHCD", "/t/<script>", "/t/" + "A" * 300, "/r/NOSUCHCD"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "<h1>" in answer.text
        assert "Traceback" not in answer.text
    fresh(session)
    tp_service.set_enabled(session, system_actor(shop.tenant.id), table.id, False)
    session.commit()
    answer = client.get(f"/t/{table.code}")
    assert answer.status_code == 404
    flush()
    assert _events(session, "qr_scan") == []  # a disabled code records no scan


def test_feedback_with_a_receipt_and_recovery_for_low_scores(client: TestClient,
                                                             session: Session) -> None:
    shop = make_shop(session)
    receipt_tp = make_touchpoint(session, shop, Purpose.feedback, number=None,
                                 target_url="https://maps.example/review", reward_points=10)
    order = make_order(session, shop.tenant, store_id=shop.store.id)
    fresh(session)
    issued = issue_receipt(session, system_actor(shop.tenant.id), order.id, "小王")
    session.commit()
    page = client.get(f"/t/{receipt_tp.code}?r={issued.token}")
    assert page.status_code == 200
    assert "data-receipt" in page.text
    token = form_token_of(page.text)
    # Out of range ratings are refused and nothing is stored.
    for bad in ("0", "6", "x", ""):
        answer = client.post(f"/t/{receipt_tp.code}", data={
            "form_token": token, "phone": "0912 345 678", "r": issued.token, "rating": bad})
        assert answer.status_code == 422, bad
    answer = client.post(f"/t/{receipt_tp.code}", data={
        "form_token": token, "phone": "0912 345 678", "r": issued.token, "rating": "2",
        "nps": "3", "comment": "湯是冷的"}, follow_redirects=False)
    assert answer.status_code == 303
    done = client.get(answer.headers["location"])
    # Invited to review whatever the score (no gating), and rewarded the same.
    assert "data-review-invite" in done.text
    assert "data-points-given" in done.text
    fresh(session)
    (fb,) = session.scalars(select(Feedback))
    assert (fb.rating, fb.nps, fb.order_id, fb.staff_label) == (2, 3, order.id, "小王")
    (task,) = session.scalars(select(RecoveryTask))
    assert task.feedback_id == fb.id
    assert task.status.value == "open"
    assert balance_of(session, shop.tenant.id, fb.customer_id) == 10
    # The same receipt cannot give feedback twice.
    again = client.post(f"/t/{receipt_tp.code}", data={
        "form_token": token, "phone": "0912 345 678", "r": issued.token, "rating": "5"})
    assert again.status_code == 409
    # A tampered receipt QR is refused.
    tampered = issued.token[:-6] + ("A" if issued.token[-6] != "A" else "B") + issued.token[-5:]
    assert client.get(f"/t/{receipt_tp.code}?r={tampered}").status_code == 400
    assert client.post(f"/t/{receipt_tp.code}", data={
        "form_token": token, "phone": "0912 345 678", "r": tampered,
        "rating": "5"}).status_code == 400
    # A high score rewards the same and opens no task.
    other = make_order(session, shop.tenant, store_id=shop.store.id)
    fresh(session)
    second = issue_receipt(session, system_actor(shop.tenant.id), other.id, "小王")
    session.commit()
    client.post(f"/t/{receipt_tp.code}", data={
        "form_token": token, "phone": "0987 654 321", "r": second.token, "rating": "5",
        "nps": "10"})
    fresh(session)
    assert session.scalar(select(func.count()).select_from(RecoveryTask)) == 1
    high = session.scalar(select(Feedback).where(Feedback.rating == 5))
    assert high is not None
    assert balance_of(session, shop.tenant.id, high.customer_id) == 10


def test_referral_qualifies_once_at_the_first_store_purchase(client: TestClient,
                                                             session: Session) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop, Purpose.referral)
    done = join(client, table.code, "0912 345 678")
    page = client.get(done)
    link = re.search(r'value="([^"]+)" data-referral-link', page.text)
    assert link is not None
    url = link.group(1)
    path = urlsplit(url).path
    # The member cannot use their own link (same phone, or same browser).
    invite = client.get(path)
    assert invite.status_code == 200
    own = client.post(path, data={"form_token": form_token_of(invite.text),
                                  "phone": "0912 345 678"})
    assert own.status_code == 409
    assert "data-refused" in own.text
    same_browser = client.post(path, data={"form_token": form_token_of(invite.text),
                                           "phone": "0911 222 333"})
    assert same_browser.status_code == 409
    # A friend on another phone.
    friend = TestClient(client.app)
    invite = friend.get(path)
    answer = friend.post(path, data={"form_token": form_token_of(invite.text),
                                     "phone": "0911 222 333"}, follow_redirects=False)
    assert answer.status_code == 303
    added = parse_qs(urlsplit(answer.headers["location"]).query)["added"][0]
    fresh(session)
    referral = session.scalar(select(Referral))
    assert referral is not None
    assert referral.status == ReferralStatus.pending
    assert referral.coupon_id == added
    code = session.scalar(select(Coupon.code).where(Coupon.id == added))
    # The cashier redeems the welcome coupon; retried with the same key.
    key = make_api_key(session, shop.tenant, ["pos"])
    body = {"code": code, "store_code": "TPE01", "basket_total_minor": 20000}
    for _ in range(2):
        redeemed = client.post("/api/v1/pos/redeem", json=body,
                               headers={**bearer(key), "Idempotency-Key": "R-1"})
        assert redeemed.status_code in (200, 201), redeemed.text
    fresh(session)
    referral = session.scalar(select(Referral))
    assert referral is not None
    assert referral.status == ReferralStatus.qualified
    assert referral.qualified_by
    assert referral.qualified_by.startswith("redemption:")
    assert balance_of(session, shop.tenant.id, referral.referrer_id) == 100
    assert balance_of(session, shop.tenant.id, referral.friend_id) == 50
    # A later purchase changes nothing.
    make_order(session, shop.tenant, store_id=shop.store.id, customer_id=referral.friend_id,
               paid_at=utcnow().isoformat())
    fresh(session)
    assert balance_of(session, shop.tenant.id, referral.referrer_id) == 100
    # The invitation again from an unknown browser reveals nothing; a second member's link
    # cannot take over a friend already referred.
    again = TestClient(client.app)
    invite = again.get(path)
    assert again.post(path, data={"form_token": form_token_of(invite.text),
                                  "phone": "0911 222 333"}).status_code == 409


def test_one_browser_cannot_farm_join_rewards(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop, Purpose.membership, reward_points=20)
    page = client.get(f"/t/{table.code}")
    token = form_token_of(page.text)
    answers = [client.post(f"/t/{table.code}", data={"form_token": token,
                                                     "phone": f"0912 000 {n:03d}"},
                           follow_redirects=False).status_code for n in range(11)]
    assert answers == [303] * 10 + [429]
    fresh(session)
    phones = session.scalar(select(func.count()).select_from(CustomerIdentity).where(
        CustomerIdentity.kind == IdentityKind.phone))
    assert phones == 10  # the refused number made no profile
