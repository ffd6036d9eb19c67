"""Rate limits on failed code lookups, so codes cannot be guessed by trying many.

Only failures that reveal nothing but "no such code" count (unknown codes, tokens that do
not verify): a cashier whose customer misses the minimum spend is not a guesser. Both the
caller (API key or staff member) and the IP are counted, so neither many keys from one
address nor one key from many addresses gets around the limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from omniloop.campaigns.errors import CouponNotFound
from omniloop.core.ratelimit import get_rate_limiter, refuse_if_blocked
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenInvalid, TokenWrongTenant
from omniloop.tenancy.access import Actor

GUESS_ERRORS = (CouponNotFound, TokenInvalid, TokenWrongTenant)


def guess_keys(actor: Actor, ip: str | None) -> list[str]:
    keys = [f"pos-guess:{actor.tenant_id}:{actor.kind}:{actor.id or actor.label}"]
    if ip:
        keys.append(f"pos-guess-ip:{ip}")
    return keys


@contextmanager
def guarded_lookup(actor: Actor, ip: str | None) -> Iterator[None]:
    """Refuse a blocked caller up front (429); count the lookup if it fails as a guess."""
    settings = get_settings()
    limit, window = settings.pos_guess_limit, settings.pos_guess_window_seconds
    keys = guess_keys(actor, ip)
    for key in keys:
        refuse_if_blocked(key, limit=limit, window_seconds=window)
    try:
        yield
    except GUESS_ERRORS:
        limiter = get_rate_limiter()
        for key in keys:
            limiter.hit(key, limit=limit, window_seconds=window)
        raise
