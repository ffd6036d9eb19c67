"""The referral settings page reads the settings: a brand that never saved any sees the
defaults, and the GET writes nothing (GET handlers do not write)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.db import Session
from omniloop.loops.models import LoopProgram
from omniloop.tenancy.models import Role
from tests.tenancy.factories import fresh, make_staff, make_tenant
from tests.web.admin_helpers import login


def test_settings_page_shows_defaults_without_writing(client: TestClient,
                                                      session: Session) -> None:
    tenant = make_tenant(session, name="豆留森林咖啡")
    owner = make_staff(session, tenant, Role.owner)
    session.commit()
    login(client, owner.email)
    page = client.get("/admin/loops/referrals")
    assert page.status_code == 200
    assert 'name="qualify_days" value="30"' in page.text
    assert 'name="monthly_cap" value="10"' in page.text
    fresh(session)
    assert session.scalar(select(func.count()).select_from(LoopProgram)) == 0
