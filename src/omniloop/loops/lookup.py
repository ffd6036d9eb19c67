"""What `/t/<code>` and `/r/<code>` need to answer, from memory.

Both redirects are the hottest public URLs (every table of every store), and a database
read per scan would put them in line with every write on SQLite. The first request for a
code reads it (touchpoint or short link with its brand and store) and keeps the answer for
`TTL_SECONDS`; an admin change in this process forgets it at once, and other processes (when
several serve one database) see it within the TTL. A disabled code therefore keeps working
for at most `TTL_SECONDS` elsewhere: acceptable for a table tent, and said in docs/loops.md.
Unknown codes are remembered too (as None), so a scanner hammering made-up codes costs one
read per code per TTL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select

from omniloop.core.db import get_database
from omniloop.loops.models import Purpose, ShortLink, Touchpoint
from omniloop.tenancy.models import Store, Tenant

TTL_SECONDS = 10.0
MAX_ENTRIES = 50_000
V = TypeVar("V")
_CODE_CHARS = frozenset("23456789ABCDEFGHJKMNPQRSTVWXYZ")


@dataclass(frozen=True)
class TouchpointView:
    id: str
    code: str
    tenant_id: str
    tenant_slug: str
    tenant_name: str
    store_id: str
    store_name: str
    purpose: Purpose
    target_url: str
    campaign_id: str | None
    reward_campaign_id: str | None
    reward_points: int
    enabled: bool
    number: int | None
    name: str
    placement: str


@dataclass(frozen=True)
class LinkView:
    id: str
    code: str
    tenant_id: str
    target_url: str
    utm: tuple[tuple[str, str], ...]
    enabled: bool


_lock = threading.Lock()
_touchpoints: dict[str, tuple[float, TouchpointView | None]] = {}
_links: dict[str, tuple[float, LinkView | None]] = {}


def clean_code(code: str) -> str | None:
    """The code as stored (upper case), or None when it cannot be one of ours."""
    text = code.strip().upper()
    if not 4 <= len(text) <= 16 or not set(text) <= _CODE_CHARS:
        return None
    return text


def _cached(table: dict[str, tuple[float, V | None]], code: str) -> tuple[bool, V | None]:
    with _lock:
        entry = table.get(code)
    if entry is not None and entry[0] > time.monotonic():
        return True, entry[1]
    return False, None


def _keep(table: dict[str, tuple[float, V | None]], code: str, value: V | None) -> None:
    with _lock:
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[code] = (time.monotonic() + TTL_SECONDS, value)


def cached_touchpoint(code: str) -> tuple[bool, TouchpointView | None]:
    """(True, answer) when memory holds the code's answer (unknown codes too), else
    (False, None): then `touchpoint` reads it."""
    clean = clean_code(code)
    return (True, None) if clean is None else _cached(_touchpoints, clean)


def cached_link(code: str) -> tuple[bool, LinkView | None]:
    clean = clean_code(code)
    return (True, None) if clean is None else _cached(_links, clean)


def touchpoint(code: str) -> TouchpointView | None:
    clean = clean_code(code)
    if clean is None:
        return None
    hit, view = _cached(_touchpoints, clean)
    if hit:
        return view
    with get_database().unit_of_work(write=False) as session:
        row = session.execute(
            select(Touchpoint, Tenant.slug, Tenant.name, Store.name)
            .join(Tenant, Tenant.id == Touchpoint.tenant_id)
            .join(Store, (Store.tenant_id == Touchpoint.tenant_id)
                  & (Store.id == Touchpoint.store_id))
            .where(Touchpoint.code == clean)).first()
    found = None
    if row is not None:
        tp, slug, tenant_name, store_name = row
        found = TouchpointView(
            id=tp.id, code=tp.code, tenant_id=tp.tenant_id, tenant_slug=slug,
            tenant_name=tenant_name, store_id=tp.store_id, store_name=store_name,
            purpose=tp.purpose, target_url=tp.target_url, campaign_id=tp.campaign_id,
            reward_campaign_id=tp.reward_campaign_id, reward_points=tp.reward_points,
            enabled=tp.enabled and tp.retired_at is None,
            number=tp.number, name=tp.name, placement=tp.placement.value)
    _keep(_touchpoints, clean, found)
    return found


def link(code: str) -> LinkView | None:
    clean = clean_code(code)
    if clean is None:
        return None
    hit, view = _cached(_links, clean)
    if hit:
        return view
    with get_database().unit_of_work(write=False) as session:
        found_link = session.scalar(select(ShortLink).where(ShortLink.code == clean))
    found = None
    if found_link is not None:
        utm = tuple((name, value) for name, value in (
            ("utm_source", found_link.utm_source), ("utm_medium", found_link.utm_medium),
            ("utm_campaign", found_link.utm_campaign)) if value)
        found = LinkView(id=found_link.id, code=found_link.code,
                         tenant_id=found_link.tenant_id, target_url=found_link.target_url,
                         utm=utm, enabled=found_link.enabled)
    _keep(_links, clean, found)
    return found


_forget_hooks: list[Callable[[str | None], None]] = []


def on_forget(hook: Callable[[str | None], None]) -> None:
    """Also call `hook(code)` (None: every code) when codes are forgotten: what pages keep
    rendered from a code must go with it."""
    _forget_hooks.append(hook)


def forget(code: str) -> None:
    """Drop a code from memory after a change (this process sees it at once)."""
    with _lock:
        _touchpoints.pop(code, None)
        _links.pop(code, None)
    for hook in _forget_hooks:
        hook(code)


def forget_all() -> None:
    with _lock:
        _touchpoints.clear()
        _links.clear()
    for hook in _forget_hooks:
        hook(None)
