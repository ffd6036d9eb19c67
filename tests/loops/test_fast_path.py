"""`GET /t/<code>` and `/r/<code>` answered by `ScanFastPath`, past the session middleware
and the router: the same answers as the routes, errors answered by the app's handlers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from omniloop.core.db import Session
from omniloop.loops import lookup
from omniloop.loops.models import Purpose
from tests.loops.factories import flush, make_shop, make_touchpoint


def test_a_scan_takes_the_fast_path_and_is_recorded(client: TestClient,
                                                    session: Session) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop, Purpose.feedback, target_url="https://maps.example/r")
    page = client.get(f"/t/{table.code}?lang=en")
    assert page.status_code == 200
    assert 'name="form_token"' in page.text
    # The device cookie, with what Response.set_cookie would have given it.
    cookies = page.headers.get_list("set-cookie")
    (device_cookie,) = [c for c in cookies if c.startswith("ol_device=")]
    device = device_cookie.split(";")[0].removeprefix("ol_device=")
    assert device_cookie == (f"ol_device={device}; HttpOnly; Max-Age=34560000; Path=/; "
                             "SameSite=lax")
    assert not [c for c in cookies if c.startswith("omniloop_session")]
    assert client.cookies.get("ol_device") == device
    again = client.get(f"/t/{table.code}?lang=en")
    assert "ol_device" not in again.headers.get("set-cookie", "")  # known browser: kept
    assert page.headers["content-language"] == "en"  # the locale middleware ran first
    assert flush() == 2
    assert client.get("/t/NOSUCHCODE").status_code == 404  # the friendly page, not an error
    # What the fast path leaves alone still reaches the routes.
    assert client.head(f"/t/{table.code}").status_code == 405
    assert client.get(f"/t/{table.code}/feedback").status_code == 200


def test_a_busy_database_on_a_scan_is_a_503(client: TestClient, session: Session,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(session)
    table = make_touchpoint(session, shop)
    lookup.forget_all()

    def locked(code: str) -> None:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(lookup, "touchpoint", locked)
    answer = client.get(f"/t/{table.code}", headers={"accept": "application/json"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "database_busy"
    assert answer.headers["retry-after"] == "2"
