"""Who else must act, in the same transaction, when a coupon is redeemed at the POS.

The loops module qualifies a referred friend's referral at their first store purchase, and
a redemption is one (even without an order). Campaigns must not import loops (loops is
built on campaigns); `omniloop.wiring` connects them (core/signals.py says how).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniloop.core.signals import Signal

if TYPE_CHECKING:
    from omniloop.campaigns.models import Redemption
    from omniloop.core.db import Session
    from omniloop.tenancy.access import Actor

coupon_redeemed_signal: Signal[[Session, Actor, Redemption]] = Signal("coupon_redeemed")

on_coupon_redeemed = coupon_redeemed_signal.connect
coupon_redeemed = coupon_redeemed_signal.send
