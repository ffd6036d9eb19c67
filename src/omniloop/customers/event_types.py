"""The catalogue of touchpoint event types.

Standard types have a fixed meaning that analytics rely on (the loop report counts
`qr_scan`, the O2O conversion counts `coupon_claimed` and `coupon_redeemed`, ...). Brands may
send their own types too: any lower-case snake_case name that is not in the catalogue is
stored as a custom type and shown as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omniloop.core.errors import N_


@dataclass(frozen=True)
class EventType:
    name: str
    label: str  # English msgid
    channel: str  # the usual channel: online or offline


EVENT_TYPES: dict[str, EventType] = {t.name: t for t in (
    EventType("ad_click", N_("Clicked an ad"), "online"),
    EventType("link_click", N_("Clicked a link"), "online"),
    EventType("page_view", N_("Viewed a page"), "online"),
    EventType("qr_scan", N_("Scanned a QR code"), "offline"),
    EventType("coupon_claimed", N_("Claimed a coupon"), "online"),
    EventType("coupon_redeemed", N_("Redeemed a coupon"), "offline"),
    EventType("store_visit", N_("Visited a store"), "offline"),
    EventType("purchase", N_("Made a purchase"), "offline"),
    EventType("refund", N_("Was refunded"), "offline"),
    EventType("feedback_submitted", N_("Gave feedback"), "online"),
    EventType("review_clicked", N_("Opened the review page"), "online"),
    EventType("share", N_("Shared"), "online"),
    EventType("referral_signup", N_("Signed up through a referral"), "online"),
    EventType("line_follow", N_("Followed the LINE account"), "online"),
    EventType("line_unfollow", N_("Unfollowed the LINE account"), "online"),
    EventType("message_sent", N_("Was sent a message"), "online"),
    EventType("message_opened", N_("Opened a message"), "online"),
    EventType("message_clicked", N_("Clicked a message"), "online"),
    EventType("consent_changed", N_("Changed consent"), "online"),
    EventType("identified", N_("Identified themselves"), "online"),
    EventType("booking_made", N_("Made a booking"), "online"),
    EventType("no_show", N_("Did not show up"), "offline"),
)}

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
CHANNELS = ("online", "offline")


def is_valid_type(name: str) -> bool:
    return bool(_TYPE_NAME.match(name))


def is_custom(name: str) -> bool:
    return name not in EVENT_TYPES
