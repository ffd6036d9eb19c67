"""Campaign lift against the holdout: counts recomputed from raw rows, the interval checked
against a hand calculation, the verdicts, and the funnel shared with the campaign report."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from omniloop.analytics import lift as lifts
from omniloop.campaigns.claims import assign_audience
from omniloop.campaigns.report import campaign_report
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.customers.identify import identify
from omniloop.customers.models import IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.orders import service as orders
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.access import system_actor
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_tenant


def test_relative_lift_interval_is_the_delta_method() -> None:
    got = lifts.relative_lift(120, 1000, 100, 1000)
    assert got is not None
    se = math.sqrt(0.88 / 120 + 0.9 / 100)
    assert got.estimate == pytest.approx(0.2)
    assert got.low == pytest.approx(1.2 * math.exp(-1.959963984540054 * se) - 1)
    assert got.high == pytest.approx(1.2 * math.exp(1.959963984540054 * se) - 1)
    assert not got.significant  # +20 %, interval about −6 % to +53 %
    strong = lifts.relative_lift(1200, 10000, 1000, 10000)
    assert strong is not None
    assert strong.significant
    assert lifts.relative_lift(5, 10, 0, 10) is None
    diff = lifts.difference(5, 10, 0, 10)
    assert diff is not None
    assert diff.estimate == pytest.approx(0.5)


@pytest.mark.parametrize(("x_t", "n_t", "x_c", "n_c", "key", "text"), [
    (1200, 10000, 1000, 10000, "significant", "+20% ± "),
    (120, 1000, 100, 1000, "not_significant", "Not yet significant: +20%"),
    (0, 100, 0, 10, "too_early", "Too early to tell"),
    (30, 100, 0, 40, "significant", "+30.0 percentage points"),
    (10, 100, 0, 0, "no_holdout", "No holdout"),
])
def test_verdicts_read_plainly(x_t: int, n_t: int, x_c: int, n_c: int, key: str,
                               text: str) -> None:
    lift = lifts.Lift(n_t, x_t, n_c, x_c, None, utcnow(), lifts.relative_lift(x_t, n_t, x_c, n_c),
                      lifts.difference(x_t, n_t, x_c, n_c))
    verdict = lifts.verdict(lift)
    assert verdict.key == key
    assert text in verdict.message.format(**verdict.params)


def test_conversions_equal_the_raw_rows(session: Session) -> None:
    tenant = make_tenant(session)
    actor = system_actor(tenant.id)
    campaign = make_campaign(session, tenant, holdout_share_bp=5000,
                             claim_channels=["line", "web"])
    fresh(session)
    people = [identify(session, actor, [IdentityIn(kind=IdentityKind.phone,
                                                   value=f"+8869{i:08d}")]).customer.id
              for i in range(40)]
    assigned_at = utcnow() - timedelta(days=5)
    draws = iter([0, 9999] * 20)  # alternately holdout (0 < 5000) and target
    split = assign_audience(session, actor, campaign.id, people,
                            draw=lambda _n: next(draws), now=assigned_at)
    session.commit()
    assert len(split.holdout) == len(split.targets) == 20
    bought = set(split.targets[:9]) | set(split.holdout[:3])
    n = 0
    for who in people:
        # Everyone bought before the assignment (does not count) …
        when = [assigned_at - timedelta(days=2)]
        # … and some after it, once or twice.
        if who in bought:
            when += [assigned_at + timedelta(days=1), assigned_at + timedelta(days=2)]
        for paid_at in when:
            n += 1
            orders.ingest_order(session, actor, OrderIn.model_validate({
                "external_id": f"L-{n}", "source": "pos", "customer_id": who,
                "lines": [{"sku": "CF", "name": "咖啡", "quantity": 1,
                           "unit_price_minor": 9000}],
                "paid_at": paid_at.isoformat()}))
    session.commit()
    lift = lifts.campaign_lift(session, actor, campaign.id)
    assert (lift.targets, lift.targets_converted) == (20, 9)
    assert (lift.holdout, lift.holdout_converted) == (20, 3)
    assert lift.relative is not None
    assert lift.relative.estimate == pytest.approx(9 / 20 / (3 / 20) - 1)
    verdict = lifts.verdict(lift)
    assert verdict.key == "not_significant"
    # The funnel is the campaign report's own.
    claim_for(session, tenant, campaign, phone="0912-000-001", channel="line")
    page = lifts.lift_page(session, actor, campaign.id)
    assert page.report == campaign_report(session, actor, campaign.id)
    assert page.report.claimed == 1


def test_a_campaign_without_audience_has_no_lift(session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    lift = lifts.campaign_lift(session, system_actor(tenant.id), campaign.id)
    assert (lift.targets, lift.holdout) == (0, 0)
    assert lifts.verdict(lift).key == "no_holdout"
