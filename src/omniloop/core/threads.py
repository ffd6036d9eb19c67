"""Blocking work (the database) off the event loop, in one cheap hop.

Starlette's `run_in_threadpool` goes through anyio: a capacity limiter, a cancel scope and
several context-variable look-ups around every call. Under uvloop that was ~15 % of the event
loop's time on the hot API calls (py-spy on the identify benchmark, docs/benchmarks.md).
omniloop's own hops use asyncio's executor directly: a pool of the same size as anyio's
default limiter (40 threads) and the caller's context variables (the request's language)
carried into the thread. Work that has started runs to its end whatever happens to the
request (a thread cannot be interrupted), so a client that hangs up never cuts a unit of work
in half.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREADS = 40

_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="omniloop-work")


async def in_thread(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)` in a worker thread, awaited."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _executor, partial(context.run, work, *args, **kwargs))
