"""Rate limits, the same expectations for the in-process limiter and for Redis.

Redis tests use the server at OMNILOOP_TEST_REDIS_URL (default redis://127.0.0.1:6379/0)
under a key prefix unique to the test, deleted afterwards; they are skipped, with the reason
shown, when no Redis answers there.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import cast

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from omniloop.core import i18n
from omniloop.core.errors_http import install_error_handlers
from omniloop.core.ratelimit import (
    KEY_PREFIX,
    MemoryRateLimiter,
    RateLimited,
    RateLimiter,
    RedisRateLimiter,
    enforce,
    get_rate_limiter,
    refuse_if_blocked,
    set_rate_limiter,
)
from omniloop.core.settings import get_settings

REDIS_URL = os.environ.get("OMNILOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DAY = 86_400   # long windows where a test must not cross a window boundary


def _redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = _redis_client()
    prefix = f"{KEY_PREFIX}test:{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter()
    client, prefix = request.getfixturevalue("redis_prefix")
    return RedisRateLimiter(client, prefix=prefix)


def test_exactly_limit_hits_pass_under_16_concurrent_threads(limiter: RateLimiter) -> None:
    limit, threads, per_thread = 50, 16, 10
    start = threading.Barrier(threads)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        mine = [limiter.hit("burst", limit=limit, window_seconds=DAY).allowed
                for _ in range(per_thread)]
        with lock:
            allowed.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(allowed) == threads * per_thread
    assert sum(allowed) == limit
    assert not limiter.peek("burst", limit=limit, window_seconds=DAY).allowed


def test_remaining_counts_down_and_refusals_say_when(limiter: RateLimiter) -> None:
    decisions = [limiter.hit("k", limit=3, window_seconds=DAY) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.retry_after_seconds for d in decisions[:3]] == [0, 0, 0]
    seconds_to_midnight_utc = DAY - int(time.time()) % DAY
    assert 1 <= decisions[3].retry_after_seconds <= seconds_to_midnight_utc + 1


def test_peek_does_not_count(limiter: RateLimiter) -> None:
    for _ in range(10):
        decision = limiter.peek("p", limit=2, window_seconds=DAY)
        assert (decision.allowed, decision.remaining) == (True, 2)
    assert limiter.hit("p", limit=2, window_seconds=DAY).allowed
    assert limiter.peek("p", limit=2, window_seconds=DAY).remaining == 1
    assert limiter.hit("p", limit=2, window_seconds=DAY).allowed
    blocked = limiter.peek("p", limit=2, window_seconds=DAY)
    assert (blocked.allowed, blocked.remaining) == (False, 0)
    assert blocked.retry_after_seconds >= 1


def test_a_refused_hit_is_not_counted_and_cost_is_honoured(limiter: RateLimiter) -> None:
    assert limiter.hit("c", limit=5, window_seconds=DAY, cost=3).remaining == 2
    refused = limiter.hit("c", limit=5, window_seconds=DAY, cost=3)
    assert (refused.allowed, refused.remaining) == (False, 2)
    assert limiter.hit("c", limit=5, window_seconds=DAY, cost=2).allowed
    assert not limiter.hit("c", limit=5, window_seconds=DAY).allowed


def test_keys_are_independent_and_reset_forgets(limiter: RateLimiter) -> None:
    assert limiter.hit("a", limit=1, window_seconds=DAY).allowed
    assert not limiter.hit("a", limit=1, window_seconds=DAY).allowed
    assert limiter.hit("b", limit=1, window_seconds=DAY).allowed
    limiter.reset("a")
    limiter.reset("never-seen")
    assert limiter.hit("a", limit=1, window_seconds=DAY).allowed


def test_a_new_window_starts_afresh(limiter: RateLimiter) -> None:
    assert limiter.hit("w", limit=1, window_seconds=1).allowed
    refused = limiter.hit("w", limit=1, window_seconds=1)
    if refused.allowed:       # the two hits straddled a second: now we are early in one
        refused = limiter.hit("w", limit=1, window_seconds=1)
    assert (refused.allowed, refused.retry_after_seconds) == (False, 1)
    time.sleep(1.0)           # a full second later is always another 1-second window
    assert limiter.hit("w", limit=1, window_seconds=1).allowed


@pytest.mark.parametrize("bad", [{"limit": 0, "window_seconds": 1},
                                 {"limit": 1, "window_seconds": 0},
                                 {"limit": 2, "window_seconds": 1, "cost": 3},
                                 {"limit": 2, "window_seconds": 1, "cost": 0}])
def test_nonsense_limits_are_programming_errors(limiter: RateLimiter,
                                                bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="bad rate limit"):
        limiter.hit("x", **bad)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_windows_and_retry_after_follow_the_clock() -> None:
    clock = FakeClock(1_000.25)
    limiter = MemoryRateLimiter(clock=clock)
    assert limiter.hit("k", limit=2, window_seconds=60).allowed   # window 960..1020
    assert limiter.hit("k", limit=2, window_seconds=60).allowed
    assert limiter.hit("k", limit=2, window_seconds=60).retry_after_seconds == 20
    clock.now = 1_019.5
    assert limiter.peek("k", limit=2, window_seconds=60).retry_after_seconds == 1
    clock.now = 1_020.0
    assert limiter.hit("k", limit=2, window_seconds=60).remaining == 1


def test_memory_stays_bounded() -> None:
    clock = FakeClock(0.0)
    limiter = MemoryRateLimiter(clock=clock, max_keys=100, sweep_every=50)
    for i in range(40):
        limiter.hit(f"old{i}", limit=5, window_seconds=10)
    clock.now = 10.0                               # their windows have ended
    for i in range(50):
        limiter.hit(f"new{i}", limit=5, window_seconds=10)
    assert len(limiter) <= 50                      # swept at the 50th hit since the last
    for i in range(500):
        limiter.hit(f"flood{i}", limit=5, window_seconds=10)
    assert len(limiter) <= 100
    assert limiter.peek("flood499", limit=5, window_seconds=10).remaining == 4


def test_redis_keys_live_under_the_prefix_and_expire(
        redis_prefix: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_prefix
    limiter = RedisRateLimiter(client, prefix=prefix)
    limiter.hit("login:203.0.113.9", limit=5, window_seconds=60)
    assert client.exists(prefix + "login:203.0.113.9")
    assert 0 < client.pttl(prefix + "login:203.0.113.9") <= 60_000


def test_unreachable_redis_fails_open_unless_told_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = cast(Callable[..., object], redis.Redis.execute_command)

    def counting(self: redis.Redis, *args: object, **options: object) -> object:
        nonlocal calls
        calls += 1
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    limiter = RedisRateLimiter(client, pause_seconds=60)
    assert limiter.hit("k", limit=1, window_seconds=60).allowed
    tried = calls
    assert tried >= 1
    for _ in range(3):                    # paused: no more connection attempts
        assert limiter.hit("k", limit=1, window_seconds=60).allowed
        assert limiter.peek("k", limit=1, window_seconds=60).allowed
    assert calls == tried
    with pytest.raises(redis.RedisError):
        RedisRateLimiter(client, fail_open=False).hit("k", limit=1, window_seconds=60)


def test_the_configured_client_does_not_retry_for_long(monkeypatch: pytest.MonkeyPatch) -> None:
    set_rate_limiter(None)
    try:
        monkeypatch.setattr(get_settings(), "redis_url", "redis://127.0.0.1:1/0")
        started = time.monotonic()
        assert get_rate_limiter().hit("k", limit=1, window_seconds=60).allowed
        assert time.monotonic() - started < 2
    finally:
        set_rate_limiter(None)


def test_settings_choose_the_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    set_rate_limiter(None)
    try:
        monkeypatch.setattr(get_settings(), "redis_url", None)
        assert isinstance(get_rate_limiter(), MemoryRateLimiter)
        assert get_rate_limiter() is get_rate_limiter()
        set_rate_limiter(None)
        monkeypatch.setattr(get_settings(), "redis_url", REDIS_URL)
        assert isinstance(get_rate_limiter(), RedisRateLimiter)
    finally:
        set_rate_limiter(None)


@pytest.fixture
def guarded_app(limiter: RateLimiter) -> Iterator[TestClient]:
    """A tiny app with the real error handlers: a general budget and a failure counter."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/api/send")
    def send() -> dict[str, int]:
        return {"remaining": enforce("send", limit=2, window_seconds=DAY,
                                     limiter=limiter).remaining}

    @app.get("/api/check/{code}")
    def check(code: str) -> dict[str, bool]:
        refuse_if_blocked("fail:key1", limit=3, window_seconds=DAY, limiter=limiter)
        if code != "GOOD":
            limiter.hit("fail:key1", limit=3, window_seconds=DAY)
            return {"ok": False}
        return {"ok": True}

    with TestClient(app) as client:
        yield client


def test_spent_budget_is_a_429_with_retry_after(guarded_app: TestClient) -> None:
    assert guarded_app.get("/api/send").json() == {"remaining": 1}
    assert guarded_app.get("/api/send").json() == {"remaining": 0}
    response = guarded_app.get("/api/send")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= DAY
    assert f"{retry_after} 秒" in error["message"]           # zh-TW, the default language


def test_only_failures_count_and_a_blocked_caller_is_refused_early(
        guarded_app: TestClient) -> None:
    for _ in range(5):
        assert guarded_app.get("/api/check/GOOD").json() == {"ok": True}
    for _ in range(3):
        assert guarded_app.get("/api/check/BAD").json() == {"ok": False}
    response = guarded_app.get("/api/check/GOOD")              # even the right code now
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert "失敗次數過多" in response.json()["error"]["message"]


def test_rate_limited_message_in_english() -> None:
    error = RateLimited(0)
    assert error.retry_after == 1
    token = i18n.current_locale.set("en")
    try:
        assert error.localized() == "Too many requests. Try again in 1 s."
    finally:
        i18n.current_locale.reset(token)
