"""omniloop's own hop to a worker thread: the request's context goes along, errors come back,
and the loop stays free while the work runs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from omniloop.core.i18n import current_locale
from omniloop.core.threads import in_thread


def test_the_work_runs_in_another_thread_with_the_callers_language() -> None:
    def work(suffix: str) -> tuple[str, bool]:
        return current_locale.get() + suffix, threading.current_thread() is main

    async def request() -> tuple[str, bool]:
        current_locale.set("en")
        return await in_thread(work, "!")

    main = threading.current_thread()
    assert asyncio.run(request()) == ("en!", False)


def test_errors_of_the_work_reach_the_caller() -> None:
    def failing() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        asyncio.run(in_thread(failing))


def test_the_loop_answers_others_while_work_blocks() -> None:
    async def both() -> list[str]:
        done: list[str] = []

        async def quick() -> None:
            done.append("quick")

        slow = asyncio.ensure_future(in_thread(time.sleep, 0.2))
        await quick()
        await slow
        done.append("slow")
        return done

    assert asyncio.run(both()) == ["quick", "slow"]
