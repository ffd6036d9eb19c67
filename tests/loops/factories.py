"""Factories for loops tests. Each commits, as a real request would."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.testclient import TestClient

from omniloop.campaigns.models import Campaign
from omniloop.core.db import Session
from omniloop.loops import program as program_service
from omniloop.loops import touchpoints as tp_service
from omniloop.loops.models import Placement, Purpose, Touchpoint
from omniloop.loops.recorder import recorder
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Store, Tenant
from tests.campaigns.factories import make_campaign
from tests.tenancy.factories import fresh, make_store, make_tenant


@dataclass
class Shop:
    tenant: Tenant
    store: Store
    welcome: Campaign


def make_shop(session: Session, *, monthly_cap: int = 10, qualify_days: int = 30,
              slug: str | None = None) -> Shop:
    tenant = make_tenant(session, slug=slug, name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    welcome = make_campaign(session, tenant, name="好友見面禮 NT$50", value_minor=5000)
    fresh(session)
    program_service.update_program(session, system_actor(tenant.id), program_service.ProgramData(
        welcome_campaign_id=welcome.id, make_good_campaign_id=None, qualify_days=qualify_days,
        monthly_cap=monthly_cap, referrer_points=100, friend_points=50))
    session.commit()
    return Shop(tenant=tenant, store=store, welcome=welcome)


def make_touchpoint(session: Session, shop: Shop, purpose: Purpose = Purpose.membership, *,
                    placement: Placement = Placement.table, number: int | None = 1,
                    target_url: str = "", reward_points: int = 0,
                    reward_campaign_id: str | None = None, store: Store | None = None,
                    campaign_id: str | None = None) -> Touchpoint:
    fresh(session)
    touchpoint = tp_service.create_touchpoint(session, system_actor(shop.tenant.id),
                                              tp_service.TouchpointData(
        store_id=(store or shop.store).id, placement=placement, purpose=purpose,
        number=number, target_url=target_url, reward_points=reward_points,
        reward_campaign_id=reward_campaign_id, campaign_id=campaign_id))
    session.commit()
    return touchpoint


def form_token_of(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)


def join(client: TestClient, code: str, phone: str, **fields: str) -> str:
    """Open the touchpoint, send the form; the done page's URL (after the redirect)."""
    page = client.get(f"/t/{code}")
    assert page.status_code == 200, page.text
    answer = client.post(f"/t/{code}", data={"form_token": form_token_of(page.text),
                                             "phone": phone, **fields},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def flush() -> int:
    return recorder.flush()
