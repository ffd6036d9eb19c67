"""LINE message objects as the Messaging API takes them: text and Flex coupon cards.

Built as plain JSON (what the outbox stores) and checked with the SDK's models, so a
message that LINE would refuse is refused when it is enqueued, not at 3 a.m. in the worker.
"""

from __future__ import annotations

from typing import Any

from omniloop.messaging.errors import MessageContentInvalid

MAX_TEXT = 5000
MAX_ALT_TEXT = 400


def text(body: str) -> dict[str, Any]:
    body = body.strip()
    if not 1 <= len(body) <= MAX_TEXT:
        raise MessageContentInvalid(problem=f"a LINE text must be 1–{MAX_TEXT} characters.")
    return {"type": "text", "text": body}


def _button(label: str, uri: str, style: str) -> dict[str, Any]:
    return {"type": "button", "style": style, "height": "sm",
            "action": {"type": "uri", "label": label[:40], "uri": uri}}


def coupon_card(*, title: str, description: str, claim_url: str | None = None,
                wallet_url: str | None = None, claim_label: str = "領取優惠券",
                wallet_label: str = "我的優惠券", image_url: str | None = None,
                alt_text: str | None = None) -> dict[str, Any]:
    """A Flex bubble: title, description, and buttons to claim and to open the wallet."""
    if not claim_url and not wallet_url:
        raise MessageContentInvalid(problem="a coupon card needs a claim or a wallet link.")
    buttons = []
    if claim_url:
        buttons.append(_button(claim_label, claim_url, "primary"))
    if wallet_url:
        buttons.append(_button(wallet_label, wallet_url, "secondary" if claim_url else "primary"))
    bubble: dict[str, Any] = {
        "type": "bubble",
        "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": [
            {"type": "text", "text": title[:100] or "-", "weight": "bold", "size": "lg",
             "wrap": True},
            {"type": "text", "text": description[:500] or " ", "size": "sm", "wrap": True,
             "color": "#555555"},
        ]},
        "footer": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": buttons},
    }
    if image_url:
        bubble["hero"] = {"type": "image", "url": image_url, "size": "full",
                          "aspectRatio": "20:13", "aspectMode": "cover"}
    return {"type": "flex", "altText": (alt_text or title)[:MAX_ALT_TEXT] or "coupon",
            "contents": bubble}


def validate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check message objects against the SDK's models (1–5 per request)."""
    from linebot.v3.messaging import Message

    if not 1 <= len(messages) <= 5:
        raise MessageContentInvalid(problem="a LINE request carries 1 to 5 messages.")
    for message in messages:
        try:
            parsed = Message.from_dict(message)
        except (ValueError, TypeError, KeyError) as exc:
            raise MessageContentInvalid(problem=str(exc)[:200]) from None
        if parsed is None:
            raise MessageContentInvalid(problem="unknown LINE message type.")
    return messages
