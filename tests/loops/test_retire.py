"""Removing a touchpoint from the admin: one never scanned is deleted; one that was is
retired (its printed code says "not in use", the list hides it under a filter, its scans
stay in the report). A confirm step, CSRF and an audit entry either way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.loops import touchpoints as tp_service
from omniloop.loops.errors import TouchpointRetired, TouchpointScanned
from omniloop.loops.models import Touchpoint
from omniloop.loops.report import loop_report
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Role
from tests.loops.factories import flush, make_shop, make_touchpoint
from tests.tenancy.factories import fresh, make_staff
from tests.web.admin_helpers import csrf_from, login


def _audit(session: Session, action: str) -> list[AuditEntry]:
    fresh(session)
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_touchpoint_never_scanned_is_deleted_after_a_confirm_step(
        client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    touchpoint = make_touchpoint(session, shop, number=7)
    tp_id, code = touchpoint.id, touchpoint.code
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    listed = client.get("/admin/loops/touchpoints")
    assert f'href="/admin/loops/touchpoints/{touchpoint.id}/remove"' in listed.text
    confirm = client.get(f"/admin/loops/touchpoints/{touchpoint.id}/remove")
    assert confirm.status_code == 200
    assert f'action="/admin/loops/touchpoints/{touchpoint.id}/delete"' in confirm.text
    assert "/retire" not in confirm.text
    # Without the CSRF token nothing happens.
    refused = client.post(f"/admin/loops/touchpoints/{touchpoint.id}/delete",
                          follow_redirects=False)
    assert refused.status_code == 403
    done = client.post(f"/admin/loops/touchpoints/{touchpoint.id}/delete",
                       data={"csrf_token": csrf_from(confirm.text)}, follow_redirects=False)
    assert done.status_code == 303
    fresh(session)
    assert session.get(Touchpoint, (shop.tenant.id, tp_id)) is None
    (entry,) = _audit(session, "touchpoint.delete")
    assert (entry.entity_id, entry.details["code"]) == (tp_id, code)
    gone = client.get(f"/t/{code}")
    assert gone.status_code == 404
    assert "此條碼未啟用" in gone.text
    # Another brand's id, or a made-up one: 404, never a 500.
    assert client.get("/admin/loops/touchpoints/nope/remove").status_code == 404


def test_a_scanned_touchpoint_is_retired_and_keeps_its_history(
        client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    touchpoint = make_touchpoint(session, shop, number=3)
    kept = make_touchpoint(session, shop, number=4)
    for _ in range(2):
        assert client.get(f"/t/{touchpoint.code}").status_code == 200
    flush()
    fresh(session)
    scanned = session.get(Touchpoint, (shop.tenant.id, touchpoint.id))
    assert scanned is not None
    assert scanned.scans == 2
    session.rollback()
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    confirm = client.get(f"/admin/loops/touchpoints/{touchpoint.id}/remove")
    assert f'action="/admin/loops/touchpoints/{touchpoint.id}/retire"' in confirm.text
    assert "/delete" not in confirm.text
    token = csrf_from(confirm.text)
    # Deleting it anyway (a stale page, a crafted form) is refused with the reason.
    forced = client.post(f"/admin/loops/touchpoints/{touchpoint.id}/delete",
                         data={"csrf_token": token})
    assert forced.status_code == 409
    assert "退役" in forced.text
    retired = client.post(f"/admin/loops/touchpoints/{touchpoint.id}/retire",
                          data={"csrf_token": token}, follow_redirects=False)
    assert retired.status_code == 303
    # The printed code now says it is not in use, and records no scan.
    page = client.get(f"/t/{touchpoint.code}")
    assert page.status_code == 404
    assert "此條碼未啟用" in page.text
    flush()
    fresh(session)
    row = session.get(Touchpoint, (shop.tenant.id, touchpoint.id))
    assert row is not None
    assert (row.retired_at is not None, row.enabled, row.scans) == (True, False, 2)
    (entry,) = _audit(session, "touchpoint.retire")
    assert entry.entity_id == touchpoint.id
    # The list hides it; the "retired" filter shows it.
    listed = client.get("/admin/loops/touchpoints")
    assert f'data-code="{touchpoint.code}"' not in listed.text
    assert f'data-code="{kept.code}"' in listed.text
    shown = client.get("/admin/loops/touchpoints", params={"show": "retired"})
    assert f'data-code="{touchpoint.code}"' in shown.text
    assert f'data-code="{kept.code}"' not in shown.text
    # It cannot be switched on or changed again.
    again = client.post(f"/admin/loops/touchpoints/{touchpoint.id}/enabled",
                        data={"csrf_token": token, "enabled": "1"})
    assert again.status_code == 409
    # Its scans stay in the loop report.
    fresh(session)
    report = loop_report(session, system_actor(shop.tenant.id), utcnow() - timedelta(days=1),
                         utcnow() + timedelta(days=1))
    assert report.overall.scans == 2


def test_service_rules(session: Session) -> None:
    shop = make_shop(session)
    touchpoint = make_touchpoint(session, shop, number=9)
    actor = system_actor(shop.tenant.id)
    fresh(session)
    tp_service.retire_touchpoint(session, actor, touchpoint.id)
    first = tp_service.get_touchpoint(session, actor, touchpoint.id).retired_at
    tp_service.retire_touchpoint(session, actor, touchpoint.id)  # twice: a no-op
    assert tp_service.get_touchpoint(session, actor, touchpoint.id).retired_at == first
    with pytest.raises(TouchpointRetired):
        tp_service.set_enabled(session, actor, touchpoint.id, True)
    # A retired table's number can be used by a new table.
    made = tp_service.create_tables(session, actor, shop.store.id, 9, 9, tp_service.TouchpointData(
        store_id=shop.store.id, placement=touchpoint.placement, purpose=touchpoint.purpose))
    assert [t.number for t in made] == [9]
    session.commit()
    fresh(session)
    scanned = session.get_one(Touchpoint, (shop.tenant.id, made[0].id))
    scanned.scans = 1
    with pytest.raises(TouchpointScanned):
        tp_service.delete_touchpoint(session, actor, made[0].id)
