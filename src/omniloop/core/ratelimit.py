"""Rate limits: fixed windows counted in Redis when configured, in process otherwise.

Two uses. Failed attempts (wrong coupon codes, forged tokens, bad logins from one API key or
IP): `peek` before the check refuses early once the limit is reached, and `hit` after each
*failure* counts it, so honest traffic is never counted at all. Request budgets (SMS sends,
say): `hit` before the work, refused when the budget is spent.

Windows are fixed and aligned to the epoch (a 60-second window runs from :00 to :59), which
makes one counter per key and an exact `retry_after`; the price is that a burst straddling
a boundary may get up to twice the limit, acceptable for brute-force protection. A refused
hit is not counted, so hammering while blocked neither extends the block nor overflows.

The embedded install has no Redis: `MemoryRateLimiter` counts in this process (one server
process, as `omniloop serve` runs). With several processes or machines set
`OMNILOOP_REDIS_URL`, and every process shares the counters.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from omniloop.core.errors import N_, OmniloopError
from omniloop.core.settings import get_settings

log = logging.getLogger("omniloop.ratelimit")

KEY_PREFIX = "omniloop:rl:"


@dataclass(frozen=True)
class RateDecision:
    """The answer for one key: may the caller go on, how much budget is left, and when to
    come back if not (whole seconds, at least 1; 0 when allowed)."""

    allowed: bool
    remaining: int
    retry_after_seconds: int


class RateLimited(OmniloopError):
    code = "rate_limited"
    status = 429
    message = N_("Too many requests. Try again in {seconds} s.")

    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        seconds = max(1, retry_after_seconds)
        super().__init__(message, seconds=seconds)
        # Read by the HTTP error handler, which sends it as the Retry-After header.
        self.retry_after = seconds


FAILED_ATTEMPTS_MESSAGE = N_("Too many failed attempts. Try again in {seconds} s.")


class RateLimiter(Protocol):
    def hit(self, key: str, *, limit: int, window_seconds: int,
            cost: int = 1) -> RateDecision:
        """Count `cost` against the key's budget if it fits; refused hits are not counted."""

    def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """Whether one more hit would be allowed, without counting anything."""

    def reset(self, key: str) -> None:
        """Forget the key's count (after a successful login, for instance)."""


def _check_arguments(limit: int, window_seconds: int, cost: int) -> None:
    if limit < 1 or window_seconds < 1 or cost < 1 or cost > limit:
        raise ValueError(f"bad rate limit: limit={limit} window={window_seconds} cost={cost}")


def _window(now: float, window_seconds: int) -> tuple[int, float]:
    """The start of the window holding `now`, and the seconds until it ends."""
    start = int(now // window_seconds) * window_seconds
    return start, start + window_seconds - now


def _retry_after(seconds_left: float) -> int:
    return max(1, math.ceil(seconds_left))


class MemoryRateLimiter:
    """Counters in a dict behind a lock: exact under threads, one process only.

    Memory stays bounded: windows that ended are swept every `sweep_every` hits, and if the
    live keys still exceed `max_keys` the oldest windows go first (an attacker rotating IPs
    could then shorten some blocks, but cannot exhaust memory).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, max_keys: int = 100_000,
                 sweep_every: int = 1_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_every = sweep_every
        self._lock = threading.Lock()
        # key -> (window start, window end, count)
        self._counts: dict[str, tuple[int, int, int]] = {}
        self._hits_since_sweep = 0

    def _current(self, key: str, now: float, window_seconds: int) -> tuple[int, int, int]:
        start, _ = _window(now, window_seconds)
        entry = self._counts.get(key)
        if entry is None or entry[0] != start or entry[1] != start + window_seconds:
            return start, start + window_seconds, 0
        return entry

    def hit(self, key: str, *, limit: int, window_seconds: int,
            cost: int = 1) -> RateDecision:
        _check_arguments(limit, window_seconds, cost)
        with self._lock:
            now = self._clock()
            start, end, count = self._current(key, now, window_seconds)
            if count + cost > limit:
                return RateDecision(False, limit - count, _retry_after(end - now))
            count += cost
            self._counts.pop(key, None)         # re-insert: dict order = oldest window first
            self._counts[key] = (start, end, count)
            self._hits_since_sweep += 1
            if self._hits_since_sweep >= self._sweep_every or len(self._counts) > self._max_keys:
                self._sweep(now)
            return RateDecision(True, limit - count, 0)

    def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        _check_arguments(limit, window_seconds, 1)
        with self._lock:
            now = self._clock()
            _, end, count = self._current(key, now, window_seconds)
        if count >= limit:
            return RateDecision(False, 0, _retry_after(end - now))
        return RateDecision(True, limit - count, 0)

    def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._hits_since_sweep = 0
        expired = [k for k, (_, end, _) in self._counts.items() if end <= now]
        for k in expired:
            del self._counts[k]
        excess = len(self._counts) - self._max_keys
        if excess > 0:
            for k in list(self._counts)[:excess]:
                del self._counts[k]

    def __len__(self) -> int:
        return len(self._counts)


# One round trip, atomic: read the key's window and count, refuse or add, set the expiry.
# The window comes from the Redis server's clock, so app servers with drifting clocks still
# agree on it. The key is a hash {s: window start ms, n: count}: one key per limit, so
# `reset` is a plain DEL. ARGV: limit, window ms, cost (0 = peek).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local start = now - (now % window)
local stored = redis.call('HMGET', KEYS[1], 's', 'n')
local count = 0
if stored[1] and tonumber(stored[1]) == start then count = tonumber(stored[2]) end
local left = start + window - now
if cost == 0 then
  if count >= limit then return {0, 0, left} end
  return {1, limit - count, left}
end
if count + cost > limit then return {0, limit - count, left} end
count = count + cost
redis.call('HSET', KEYS[1], 's', start, 'n', count)
redis.call('PEXPIREAT', KEYS[1], start + window)
return {1, limit - count, left}
"""


class RedisRateLimiter:
    """Counters shared by every process through Redis (a Lua script, so check-and-count is
    one atomic step).

    If Redis cannot be reached the limiter lets requests through and logs it (`fail_open`):
    a rate limit protects, it does not decide correctness, and a Redis hiccup should not
    stop every till. After a failure Redis is left alone for `pause_seconds`, so an outage
    costs one timeout, not one per request. Pass `fail_open=False` where refusing (an
    error) is the safer failure.
    """

    def __init__(self, client: Any, *, prefix: str = KEY_PREFIX, fail_open: bool = True,
                 pause_seconds: float = 5.0) -> None:
        self._client = client
        self._prefix = prefix
        self._fail_open = fail_open
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._script = client.register_script(_SCRIPT)

    def _run(self, key: str, limit: int, window_seconds: int, cost: int) -> RateDecision:
        import redis

        if self._fail_open and time.monotonic() < self._paused_until:
            return RateDecision(True, limit, 0)
        try:
            allowed, remaining, left_ms = self._script(
                keys=[self._prefix + key], args=[limit, window_seconds * 1000, cost])
        except redis.RedisError:
            if not self._fail_open:
                raise
            self._paused_until = time.monotonic() + self._pause_seconds
            log.warning("rate limiter: Redis unreachable; allowing requests for %.0f s",
                        self._pause_seconds, exc_info=True)
            return RateDecision(True, limit, 0)
        if allowed:
            return RateDecision(True, int(remaining), 0)
        return RateDecision(False, int(remaining), _retry_after(int(left_ms) / 1000))

    def hit(self, key: str, *, limit: int, window_seconds: int,
            cost: int = 1) -> RateDecision:
        _check_arguments(limit, window_seconds, cost)
        return self._run(key, limit, window_seconds, cost)

    def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        _check_arguments(limit, window_seconds, 1)
        return self._run(key, limit, window_seconds, 0)

    def reset(self, key: str) -> None:
        import redis

        try:
            self._client.delete(self._prefix + key)
        except redis.RedisError:
            if not self._fail_open:
                raise
            log.warning("rate limiter: Redis unreachable, could not reset %s", key,
                        exc_info=True)


_limiter: RateLimiter | None = None
_limiter_lock = threading.Lock()


def get_rate_limiter() -> RateLimiter:
    """The process's limiter: Redis when `OMNILOOP_REDIS_URL` is set, in memory otherwise.
    Created once, so in-memory counts live as long as the process."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            url = get_settings().redis_url
            if url:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                # Short timeouts and one immediate retry (a stale pooled connection), not
                # redis-py's default of ten retries with backoff: a limiter must not stall.
                _limiter = RedisRateLimiter(redis.Redis.from_url(
                    url, socket_connect_timeout=1, socket_timeout=1,
                    retry=Retry(NoBackoff(), 1)))
            else:
                _limiter = MemoryRateLimiter()
        return _limiter


def set_rate_limiter(limiter: RateLimiter | None) -> None:
    """Replace the limiter (tests); None goes back to the one the settings choose."""
    global _limiter
    with _limiter_lock:
        _limiter = limiter


def enforce(key: str, *, limit: int, window_seconds: int, cost: int = 1,
            limiter: RateLimiter | None = None) -> RateDecision:
    """Count a request against its budget, or raise RateLimited (429) when it is spent."""
    decision = (limiter or get_rate_limiter()).hit(key, limit=limit,
                                                   window_seconds=window_seconds, cost=cost)
    if not decision.allowed:
        raise RateLimited(decision.retry_after_seconds)
    return decision


def refuse_if_blocked(key: str, *, limit: int, window_seconds: int,
                      limiter: RateLimiter | None = None) -> None:
    """Raise RateLimited (429) when the key has already failed `limit` times in the window.

    Call it before a check that can fail, and `hit` the same key after each failure; the
    check itself then never runs for a blocked caller.
    """
    decision = (limiter or get_rate_limiter()).peek(key, limit=limit,
                                                    window_seconds=window_seconds)
    if not decision.allowed:
        raise RateLimited(decision.retry_after_seconds, FAILED_ATTEMPTS_MESSAGE)
