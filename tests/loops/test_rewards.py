"""A touchpoint's coupon reward goes into the visitor's wallet through the campaigns claim
rules, with the touchpoint in its attribution."""

from __future__ import annotations

from omniloop.campaigns.models import CouponStatus
from omniloop.core.db import Session
from omniloop.loops.visitors import give_reward, identify_visitor
from omniloop.tenancy.access import system_actor
from tests.campaigns.factories import make_campaign
from tests.loops.factories import make_shop


def test_coupon_reward_for_the_visitor(session: Session) -> None:
    shop = make_shop(session)
    gift = make_campaign(session, shop.tenant, name="入會禮", value_minor=3000)
    actor = system_actor(shop.tenant.id)
    visitor = identify_visitor(session, actor, "+886911222333", None, source="touchpoint")
    reward = give_reward(session, actor, visitor, key="loops:join:test", campaign_id=gift.id,
                         points=0, reason="touchpoint T1", touchpoint_code="T1")
    assert reward.refused is None
    assert reward.coupon is not None
    assert reward.coupon.customer_id == visitor.customer_id
    assert reward.coupon.status == CouponStatus.claimed
    assert (reward.coupon.claim_channel, reward.coupon.attribution) == ("qr", {"touchpoint": "T1"})
