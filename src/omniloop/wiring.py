"""Connects modules that react to each other's changes without importing each other.

One place to read what happens when an order or refund is recorded.
"""

from omniloop.loyalty import earning
from omniloop.orders.listeners import on_order_recorded, on_refund_recorded

on_order_recorded(earning.earn_for_order)
on_refund_recorded(earning.reverse_for_refund)
