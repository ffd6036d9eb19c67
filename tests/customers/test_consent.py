"""Consent per channel: opt-in default, history events, merged profiles, unsubscribe links."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.db import Database, Session
from omniloop.customers import consent
from omniloop.customers.models import Channel, ConsentStatus, CustomerConsent, Event
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Tenant
from tests.tenancy.factories import bearer, fresh, make_api_key, make_tenant
from tests.tenancy.test_concurrency import race

LINE_ID = "U" + "b2" * 16


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林咖啡")


@pytest.fixture
def key(session: Session, tenant: Tenant) -> str:
    return make_api_key(session, tenant, scopes=["admin"])


def identify(client: TestClient, key: str, *identities: tuple[str, str],
             **body: Any) -> str:
    response = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": k, "value": v} for k, v in identities], **body})
    assert response.status_code == 200, response.text
    return str(response.json()["customer"]["id"])


def put_consent(client: TestClient, key: str, customer_id: str, channel: str, status: str,
                source: str = "pos") -> dict[str, Any]:
    response = client.put(f"/api/v1/customers/{customer_id}/consents/{channel}",
                          headers=bearer(key), json={"status": status, "source": source})
    assert response.status_code == 200, response.text
    return dict(response.json())


def get_consents(client: TestClient, key: str, customer_id: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/api/v1/customers/{customer_id}/consents", headers=bearer(key))
    assert response.status_code == 200, response.text
    return {c["channel"]: c for c in response.json()}


def consent_events(session: Session) -> list[Event]:
    fresh(session)
    return list(session.scalars(select(Event).where(Event.type == "consent_changed")
                                .order_by(Event.occurred_at, Event.id)))


def count(session: Session, model: type[Any]) -> int:
    fresh(session)
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_no_consent_recorded_means_no_marketing(client: TestClient, key: str,
                                                session: Session, tenant: Tenant) -> None:
    customer = identify(client, key, ("phone", "0912345678"))
    listed = get_consents(client, key, customer)
    assert list(listed) == ["line", "email", "sms"]
    assert all(c["status"] is None and c["may_message"] is False for c in listed.values())
    for channel in Channel:
        assert consent.may_message(session, tenant.id, customer, channel) is False
    # Unknown ids and other tenants' ids are never messaged either.
    assert consent.may_message(session, tenant.id, "0" * 26, Channel.email) is False
    other = make_tenant(session, slug="rival")
    assert consent.may_message(session, other.id, customer, Channel.email) is False


def test_opt_in_and_out_through_the_api_keeps_the_history(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    customer = identify(client, key, ("email", "amy@example.com"))
    opted_in = put_consent(client, key, customer, "email", "opted_in", source="web_form")
    assert (opted_in["status"], opted_in["source"], opted_in["may_message"]) == (
        "opted_in", "web_form", True)
    assert opted_in["changed_at"] is not None
    assert consent.may_message(session, tenant.id, customer, Channel.email) is True
    assert consent.may_message(session, tenant.id, customer, Channel.sms) is False

    opted_out = put_consent(client, key, customer, "email", "opted_out", source="pos")
    assert (opted_out["status"], opted_out["may_message"]) == ("opted_out", False)
    fresh(session)
    assert consent.may_message(session, tenant.id, customer, Channel.email) is False
    # Saying the same again changes nothing and adds no history.
    again = put_consent(client, key, customer, "email", "opted_out", source="api")
    assert again["source"] == "pos"

    events = consent_events(session)
    assert [(e.customer_id, e.properties) for e in events] == [
        (customer, {"channel": "email", "status": "opted_in", "source": "web_form",
                    "previous": None}),
        (customer, {"channel": "email", "status": "opted_out", "source": "pos",
                    "previous": "opted_in"}),
    ]
    assert len({e.client_event_id for e in events}) == 2
    assert count(session, CustomerConsent) == 1
    actions = list(session.scalars(select(AuditEntry.action).where(
        AuditEntry.action == "customer.consent")))
    assert len(actions) == 2
    assert get_consents(client, key, customer)["email"]["status"] == "opted_out"


def test_consent_across_merged_profiles(client: TestClient, key: str, session: Session,
                                        tenant: Tenant) -> None:
    older = identify(client, key, ("phone", "0912345678"))
    newer = identify(client, key, ("line", LINE_ID))
    put_consent(client, key, older, "sms", "opted_in")
    put_consent(client, key, newer, "sms", "opted_out")  # later: wins after the merge
    put_consent(client, key, newer, "line", "opted_in")  # only the merged profile has it
    joined = client.post("/api/v1/customers/identify", headers=bearer(key), json={
        "identities": [{"kind": "phone", "value": "0912345678"},
                       {"kind": "line", "value": LINE_ID}]}).json()
    assert joined["merged"] == [newer]

    for asked in (older, newer):  # the merged-away id answers for the person too
        listed = get_consents(client, key, asked)
        assert listed["sms"]["status"] == "opted_out"
        assert listed["line"]["status"] == "opted_in"
        assert listed["line"]["may_message"] is True
    fresh(session)
    assert consent.may_message(session, tenant.id, older, Channel.line) is True
    assert consent.may_message(session, tenant.id, newer, Channel.sms) is False

    # A new change is written on the survivor and, being the latest, wins.
    put_consent(client, key, newer, "sms", "opted_in", source="counter")
    fresh(session)
    rows = {(r.customer_id, r.channel): r.status for r in session.scalars(
        select(CustomerConsent))}
    assert rows[(older, Channel.sms)] is ConsentStatus.opted_in
    assert rows[(newer, Channel.sms)] is ConsentStatus.opted_out
    assert consent.consents_of(session, tenant.id, newer)[Channel.sms].customer_id == older
    assert consent.may_message(session, tenant.id, older, Channel.sms) is True


@pytest.mark.parametrize(("path", "body", "field"), [
    ("fax", {"status": "opted_in"}, "channel"),
    ("EMAIL", {"status": "opted_in"}, "channel"),
    ("email", {"status": "yes"}, "status"),
    ("email", {"source": "pos"}, "status"),
    ("email", {"status": "opted_in", "source": ""}, "source"),
])
def test_bad_consent_input_is_422_naming_the_field(
        client: TestClient, key: str, session: Session, path: str, body: dict[str, str],
        field: str) -> None:
    customer = identify(client, key, ("phone", "0912345678"))
    response = client.put(f"/api/v1/customers/{customer}/consents/{path}",
                          headers=bearer(key), json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [error.get("field")] + [d["field"] for d in error["details"]]
    assert count(session, CustomerConsent) == 0


def test_other_tenants_customer_is_404(client: TestClient, key: str,
                                       session: Session) -> None:
    other = make_tenant(session, slug="rival")
    theirs = identify(client, make_api_key(session, other), ("phone", "0912345678"))
    assert client.get(f"/api/v1/customers/{theirs}/consents",
                      headers=bearer(key)).status_code == 404
    response = client.put(f"/api/v1/customers/{theirs}/consents/email", headers=bearer(key),
                          json={"status": "opted_in"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"
    assert count(session, CustomerConsent) == 0


def test_concurrent_opt_ins_leave_one_row(database: Database, session: Session,
                                          tenant: Tenant, client: TestClient,
                                          key: str) -> None:
    customer = identify(client, key, ("phone", "0912345678"))
    actor = system_actor(tenant.id)

    def call(index: int) -> str:
        with database.unit_of_work() as uow:
            row = consent.set_consent(uow, actor, customer, Channel.email,
                                      ConsentStatus.opted_in, f"caller {index}")
            return row.status.value

    outcomes = race(6, call)
    assert outcomes == {"opted_in": 6}, outcomes
    assert count(session, CustomerConsent) == 1


# --- unsubscribe links -------------------------------------------------------------------


@pytest.fixture
def subscribed(client: TestClient, key: str) -> str:
    customer = identify(client, key, ("email", "amy@example.com"), ("phone", "0912345678"))
    put_consent(client, key, customer, "email", "opted_in", source="web_form")
    put_consent(client, key, customer, "sms", "opted_in", source="web_form")
    return customer


def path_of(url: str) -> str:
    assert url.startswith("http://testserver/u/")
    return url.removeprefix("http://testserver")


def test_token_round_trip_and_length(tenant: Tenant) -> None:
    customer = "01J0000000000000000000000A"
    for channel in Channel:
        token = consent.unsubscribe_token(tenant.id, customer, channel)
        assert consent.read_unsubscribe_token(token) == consent.UnsubscribeTarget(
            tenant.id, customer, channel)
        assert len(token) < 90  # short enough for an SMS
    assert consent.unsubscribe_token(tenant.id, customer, Channel.email) != \
        consent.unsubscribe_token(tenant.id, customer, Channel.sms)
    headers = consent.list_unsubscribe_headers(tenant.id, customer)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"] == "<" + consent.unsubscribe_url(
        tenant.id, customer, Channel.email) + ">"


def test_get_shows_the_page_in_zh_tw_and_changes_nothing(
        client: TestClient, session: Session, tenant: Tenant, subscribed: str) -> None:
    path = path_of(consent.unsubscribe_url(tenant.id, subscribed, Channel.email))
    client.cookies.clear()
    page = client.get(path)
    assert page.status_code == 200
    html = page.text
    assert 'lang="zh-Hant-TW"' in html
    assert "<h1>取消訂閱</h1>" in html
    assert '<p class="muted">豆留森林咖啡</p>' in html
    assert "確定不再收到行銷電子郵件嗎？" in html
    assert f'<form method="post" action="{path}"' in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert "csrf" not in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    assert consent.may_message(session, tenant.id, subscribed, Channel.email) is True
    assert len(consent_events(session)) == 2

    english = client.get(path, params={"lang": "en"})
    assert "Stop receiving marketing e-mails?" in english.text
    assert f'action="{path}?lang=en"' in english.text
    assert "Stop receiving" in client.get(path).text  # the choice is remembered
    client.cookies.clear()
    sms = client.get(path_of(consent.unsubscribe_url(tenant.id, subscribed, Channel.sms)))
    assert "確定不再收到行銷簡訊嗎？" in sms.text


def test_post_from_the_page_opts_out_without_cookies_and_is_idempotent(
        client: TestClient, session: Session, tenant: Tenant, subscribed: str) -> None:
    path = path_of(consent.unsubscribe_url(tenant.id, subscribed, Channel.email))
    client.cookies.clear()
    done = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert "已取消訂閱" in done.text
    assert "您將不會再收到行銷電子郵件。" in done.text
    assert "豆留森林咖啡" in done.text
    assert "set-cookie" not in done.headers
    fresh(session)
    assert consent.may_message(session, tenant.id, subscribed, Channel.email) is False
    assert consent.may_message(session, tenant.id, subscribed, Channel.sms) is True
    row = consent.consents_of(session, tenant.id, subscribed)[Channel.email]
    assert (row.status, row.source) == (ConsentStatus.opted_out, "unsubscribe_link")
    last = consent_events(session)[-1]
    assert last.properties["source"] == "unsubscribe_link"
    assert last.source == "unsubscribe_link"
    audits = count(session, AuditEntry)

    for _ in range(2):
        repeated = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert repeated.status_code == 200
        assert "您將不會再收到" in repeated.text
    assert len(consent_events(session)) == 3  # two opt-ins and one opt-out, nothing more
    assert count(session, AuditEntry) == audits
    # Opened again later, the page says so instead of offering the button.
    later = client.get(path)
    assert "您先前已取消訂閱" in later.text
    assert "<form" not in later.text


@pytest.mark.parametrize("content_type", ["urlencoded", "multipart"])
def test_rfc_8058_one_click_post(client: TestClient, session: Session, tenant: Tenant,
                                 subscribed: str, content_type: str) -> None:
    path = path_of(consent.unsubscribe_url(tenant.id, subscribed, Channel.email))
    client.cookies.clear()
    if content_type == "urlencoded":
        response = client.post(path, content=b"List-Unsubscribe=One-Click", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
    else:
        response = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200, response.text
    fresh(session)
    assert consent.may_message(session, tenant.id, subscribed, Channel.email) is False


def test_unsubscribing_a_merged_away_id_opts_out_the_person(
        client: TestClient, key: str, session: Session, tenant: Tenant) -> None:
    older = identify(client, key, ("phone", "0912345678"))
    newer = identify(client, key, ("email", "amy@example.com"))
    put_consent(client, key, newer, "email", "opted_in")
    link = consent.unsubscribe_url(tenant.id, newer, Channel.email)  # sent before the merge
    identify(client, key, ("phone", "0912345678"), ("email", "amy@example.com"))
    fresh(session)
    assert consent.may_message(session, tenant.id, older, Channel.email) is True
    assert client.post(path_of(link)).status_code == 200
    fresh(session)
    assert consent.may_message(session, tenant.id, older, Channel.email) is False


def _altered(token: str, part: int, value: str) -> str:
    parts = token.split(".")
    parts[part] = value
    return ".".join(parts)


def test_forged_and_altered_tokens_are_404(client: TestClient, key: str, session: Session,
                                           tenant: Tenant, subscribed: str) -> None:
    other_customer = identify(client, key, ("phone", "0922333444"))
    put_consent(client, key, other_customer, "email", "opted_in")
    token = consent.unsubscribe_token(tenant.id, subscribed, Channel.email)
    signature = token.split(".")[3]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    bad = [
        "not-a-token",
        "a.b.c.d",
        token[:-1],
        token + "x",
        _altered(token, 3, flipped),
        _altered(token, 2, "s"),  # another channel
        _altered(token, 1, other_customer),  # another customer of the same brand
        ".".join(token.split(".")[:3]),  # no signature
    ]
    events_before = len(consent_events(session))
    client.cookies.clear()
    for forged in bad:
        page = client.get(f"/u/{forged}")
        assert page.status_code == 404, forged
        assert "連結無效" in page.text
        assert "豆留森林咖啡" not in page.text  # a bad link names nobody
        assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}
                           ).status_code == 404, forged
    assert len(consent_events(session)) == events_before
    for customer in (subscribed, other_customer):
        assert consent.may_message(session, tenant.id, customer, Channel.email) is True


def test_a_token_of_one_brand_cannot_touch_another(
        client: TestClient, key: str, session: Session, tenant: Tenant,
        subscribed: str) -> None:
    rival = make_tenant(session, slug="rival", name="對手咖啡")
    rival_key = make_api_key(session, rival)
    theirs = identify(client, rival_key, ("email", "amy@example.com"))
    put_consent(client, rival_key, theirs, "email", "opted_in")
    mine = consent.unsubscribe_token(tenant.id, subscribed, Channel.email)
    # Pointing our signed token at their brand or their customer breaks the signature ...
    for forged in (_altered(mine, 0, rival.id),
                   _altered(_altered(mine, 0, rival.id), 1, theirs)):
        assert client.post(f"/u/{forged}").status_code == 404
    # ... and even a correctly signed token naming their customer under our brand finds
    # nobody, because the lookup is scoped to the token's brand.
    cross = consent.unsubscribe_token(tenant.id, theirs, Channel.email)
    assert client.get(f"/u/{cross}").status_code == 404
    assert client.post(f"/u/{cross}").status_code == 404
    fresh(session)
    assert consent.may_message(session, rival.id, theirs, Channel.email) is True
    # Our own link still works, for our customer only.
    assert client.post(f"/u/{mine}").status_code == 200
    fresh(session)
    assert consent.may_message(session, tenant.id, subscribed, Channel.email) is False
    assert consent.may_message(session, rival.id, theirs, Channel.email) is True
