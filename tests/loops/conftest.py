from __future__ import annotations

from collections.abc import Iterator

import pytest

from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.loops import lookup
from omniloop.loops.recorder import recorder


@pytest.fixture(autouse=True)
def _fresh_lookups() -> Iterator[None]:
    """Codes cached by an earlier test's requests belong to rows that are gone now."""
    lookup.forget_all()
    set_rate_limiter(MemoryRateLimiter())  # each test starts with fresh budgets
    yield
    recorder.flush()
    lookup.forget_all()
    set_rate_limiter(None)
