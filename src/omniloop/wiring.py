"""Connects modules that react to each other's changes without importing each other.

One place to read what happens when an order or refund is recorded, a coupon is redeemed,
low feedback is given, or profiles merge.
"""

from omniloop.analytics import totals
from omniloop.campaigns.listeners import on_coupon_redeemed
from omniloop.customers.identify import merge_undone, profiles_merged
from omniloop.loops import qualifying
from omniloop.loops.feedback import low_feedback_given
from omniloop.loyalty import earning, merging
from omniloop.messaging import listeners as messaging
from omniloop.orders.listeners import on_order_recorded, on_refund_recorded

on_order_recorded(earning.earn_for_order)
on_refund_recorded(earning.reverse_for_refund)
on_order_recorded(totals.record_order)
on_refund_recorded(totals.record_refund)
on_order_recorded(qualifying.on_order)
on_coupon_redeemed(qualifying.on_redemption)
on_order_recorded(messaging.announce_order)
on_order_recorded(messaging.enter_purchase_journeys)
on_refund_recorded(messaging.announce_refund)
low_feedback_given.connect(messaging.enter_low_feedback_journeys)
profiles_merged.connect(merging.move_points_on_merge)
merge_undone.connect(merging.move_points_back)
