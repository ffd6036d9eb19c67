"""Short links `/r/<code>` for campaign URLs in ads, posts and e-mails.

A click answers a 302 to the target with the link's UTM parameters added (those the target
already names are kept), and is recorded as a `link_click` event with the UTM parameters it
arrived with (an ad network's own `utm_*` on the short link win over the link's defaults).

Bot filtering: link previewers (LINE, Facebook, Slack, Twitter/X, WhatsApp, Telegram,
Discord, iMessage…) and crawlers fetch a link the moment it is posted, before any person
clicks. Their user agents are matched by `is_bot`; they still get the redirect (a preview
must work) but count as `bot_clicks`, not clicks, and record no event. A missing user agent
counts as a bot: browsers always send one. This is "simple" filtering, as asked: a bot that
pretends to be Chrome is counted as a person.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns.codes import make_code
from omniloop.core.db import Session
from omniloop.core.errors import N_, Conflict
from omniloop.loops import lookup
from omniloop.loops.errors import ShortLinkNotFound, UrlInvalid
from omniloop.loops.models import ShortLink
from omniloop.loops.touchpoints import is_url
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

audit.register_action("short_link.create", N_("Short link created"))
audit.register_action("short_link.update", N_("Short link changed"))

CODE_PATTERN = "#######"
_CODE_RETRIES = 8
UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
_BOTS = re.compile(
    r"bot\b|bot/|crawler|spider|slurp|facebookexternalhit|facebot|meta-externalagent|"
    r"embedly|quora link preview|outbrain|pinterest|vkshare|w3c_validator|"
    r"whatsapp|telegram|discord|slack|skypeuripreview|linkedinbot|twitterbot|"
    r"line-poker|linespider|google-inspectiontool|googleother|bingpreview|"
    r"headlesschrome|python-requests|python-httpx|curl/|wget/|go-http-client|okhttp|"
    r"applebot|yandex|baiduspider|duckduckbot|petalbot|semrush|ahrefs|mj12bot|"
    r"preview|scanner|monitor|uptime|prerender", re.IGNORECASE)


@lru_cache(maxsize=1024)  # a handful of user agents make most clicks
def is_bot(user_agent: str | None) -> bool:
    if not user_agent or not user_agent.strip():
        return True
    return bool(_BOTS.search(user_agent))


@lru_cache(maxsize=4096)  # a link's clicks mostly carry the same parameters
def with_utm(target: str, utm: tuple[tuple[str, str], ...]) -> str:
    """The target with the link's UTM parameters added where the target has none."""
    if not utm:
        return target
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(name, value) for name, value in utm if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _clean(text: str, limit: int = 64) -> str:
    return text.strip()[:limit]


def create_link(session: Session, actor: Actor, *, name: str, target_url: str,
                utm_source: str = "", utm_medium: str = "", utm_campaign: str = "") -> ShortLink:
    actor.require(Permission.campaigns_manage)
    target = target_url.strip()
    if not is_url(target) and not (target.startswith("/") and len(target) <= 500):
        raise UrlInvalid(field="target_url")
    for _ in range(_CODE_RETRIES):
        try:
            with session.begin_nested():
                link = ShortLink(tenant_id=actor.tenant_id, code=make_code(CODE_PATTERN),
                                 name=_clean(name, 120), target_url=target,
                                 utm_source=_clean(utm_source), utm_medium=_clean(utm_medium),
                                 utm_campaign=_clean(utm_campaign))
                session.add(link)
                session.flush()
        except IntegrityError:
            continue
        audit.record(session, actor, "short_link.create", "short_link", link.id,
                     {"code": link.code, "target_url": target})
        return link
    raise Conflict()


def get_link(session: Session, actor: Actor, link_id: str) -> ShortLink:
    actor.require(Permission.campaigns_read)
    link = session.get(ShortLink, (actor.tenant_id, link_id))
    if link is None:
        raise ShortLinkNotFound()
    return link


def set_link_enabled(session: Session, actor: Actor, link_id: str, enabled: bool) -> ShortLink:
    actor.require(Permission.campaigns_manage)
    link = get_link(session, actor, link_id)
    link.enabled = enabled
    session.flush()
    audit.record(session, actor, "short_link.update", "short_link", link.id,
                 {"enabled": enabled})
    lookup.forget(link.code)
    return link


def list_links(session: Session, actor: Actor) -> list[ShortLink]:
    actor.require(Permission.campaigns_read)
    return list(session.scalars(select(ShortLink).where(ShortLink.tenant_id == actor.tenant_id)
                                .order_by(ShortLink.created_at.desc())))
