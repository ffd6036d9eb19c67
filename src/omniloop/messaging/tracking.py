"""Open and click tracking of marketing e-mails.

When a marketing e-mail with an HTML part goes out, `instrument` rewrites each web link of
the HTML to `/m/c/<token>` and adds a 1×1 image `/m/o/<token>.gif`. The tokens are signed
(the instance's secret key; they cannot be made up or altered) and name only the brand, the
outbox message and the link's position: the click answers with a redirect to the link as it
stands in the stored message, so a token can never send anyone to an address of its own
choosing (no open redirect), and a message whose content was erased leads nowhere.

The first open records a `message_opened` event and `opened_at` on the message; every click
counts in `clicks`, the first one per link records a `message_clicked` event (with the URL),
and a click also counts as an open (mail clients that block images still open the mail).
What this cannot know, and the send's page says: mail clients that fetch images on their own
(Apple Mail's privacy protection) count as opens; clients that block images never do; the
plain-text part and LINE and SMS messages are not tracked (a LINE multicast is one request
for up to 500 people, so its links cannot name the person).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.settings import get_settings
from omniloop.customers.events import record_event
from omniloop.messaging.models import OutboxMessage
from omniloop.tenancy.access import system_actor

_SALT = "omniloop.messaging.tracking"
_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
# The one-click unsubscribe link works without tracking, and a person leaving should not be
# counted as interested.
_UNTRACKED_PATHS = ("/u/",)
# The smallest transparent GIF.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
         b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().resolved_secret_key(), salt=_SALT)


def _tracked(url: str) -> bool:
    base = get_settings().base_url.rstrip("/")
    return not any(url.startswith(base + path) for path in _UNTRACKED_PATHS)


def links_of(body: str) -> list[str]:
    """The web links of an HTML body that tracking rewrites, in order, as a browser reads
    them (entities decoded)."""
    return [html.unescape(m.group(3)) for m in _HREF.finditer(body)
            if _tracked(html.unescape(m.group(3)))]


def instrument(body: str, tenant_id: str, message_id: str) -> str:
    """The HTML with its links sent through `/m/c/…` and an open pixel `/m/o/….gif`."""
    base = get_settings().base_url.rstrip("/")
    serializer = _serializer()
    position = -1

    def rewrite(match: re.Match[str]) -> str:
        nonlocal position
        if not _tracked(html.unescape(match.group(3))):
            return match.group(0)
        position += 1
        token = serializer.dumps(["c", tenant_id, message_id, position])
        return f"{match.group(1)}{match.group(2)}{base}/m/c/{token}{match.group(2)}"

    rewritten = _HREF.sub(rewrite, body)
    pixel = (f'<img src="{base}/m/o/{serializer.dumps(["o", tenant_id, message_id])}.gif" '
             'width="1" height="1" alt="" style="border:0;width:1px;height:1px">')
    closing = rewritten.lower().rfind("</body>")
    if closing == -1:
        return rewritten + pixel
    return rewritten[:closing] + pixel + rewritten[closing:]


@dataclass(frozen=True)
class Tracked:
    tenant_id: str
    message_id: str
    link: int | None  # None: the open pixel


def read_token(token: str) -> Tracked | None:
    """What a tracking token names; None for anything not made by `instrument`."""
    try:
        value = _serializer().loads(token)
    except BadSignature:
        return None
    if (isinstance(value, list) and len(value) == 3 and value[0] == "o"
            and all(isinstance(v, str) for v in value[1:])):
        return Tracked(value[1], value[2], None)
    if (isinstance(value, list) and len(value) == 4 and value[0] == "c"
            and isinstance(value[1], str) and isinstance(value[2], str)
            and isinstance(value[3], int) and value[3] >= 0):
        return Tracked(value[1], value[2], value[3])
    return None


def _event(session: Session, message: OutboxMessage, kind: str, client_event_id: str,
           now: datetime, properties: dict[str, object]) -> None:
    if message.customer_id is None:
        return
    record_event(session, system_actor(message.tenant_id, "e-mail tracking"),
                 client_event_id=client_event_id, type=kind, channel="online",
                 source="email", customer_id=message.customer_id, occurred_at=now,
                 properties={"message_id": message.id, "send_id": message.send_id,
                             **properties})


def record_open(session: Session, tracked: Tracked, *, now: datetime | None = None) -> bool:
    """The message was opened (once counted; later opens change nothing). False when the
    message is not there any more."""
    now = now or utcnow()
    message = session.get(OutboxMessage, (tracked.tenant_id, tracked.message_id))
    if message is None:
        return False
    if message.opened_at is None:
        message.opened_at = now
        _event(session, message, "message_opened", f"open:{message.id}", now, {})
    return True


def record_click(session: Session, tracked: Tracked, *,
                 now: datetime | None = None) -> str | None:
    """The link the click leads to, after counting it; None when the message, its content
    (erased) or that link is not there any more."""
    assert tracked.link is not None
    now = now or utcnow()
    message = session.get(OutboxMessage, (tracked.tenant_id, tracked.message_id))
    if message is None:
        return None
    links = links_of(str(message.payload.get("html") or ""))
    if tracked.link >= len(links):
        return None
    url = links[tracked.link]
    record_open(session, tracked, now=now)
    # One UPDATE: concurrent clicks of one mail all count.
    session.execute(update(OutboxMessage).where(
        OutboxMessage.tenant_id == message.tenant_id, OutboxMessage.id == message.id).values(
            clicks=OutboxMessage.clicks + 1).execution_options(synchronize_session=False))
    if message.clicked_at is None:
        message.clicked_at = now
    _event(session, message, "message_clicked", f"click:{message.id}:{tracked.link}", now,
           {"url": url[:500]})
    return url
