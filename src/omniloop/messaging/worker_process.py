"""`omniloop serve --with-worker`: the worker as a child process beside the web server.

A child process rather than a thread: Huey's consumer installs signal handlers (main thread
only), and a worker that crashes or is killed must not take the web server with it.

The child must not outlive the server. uvicorn, after a graceful SIGTERM shutdown, raises the
signal again with the handler that was in place before it started; with Python's default
handler that ends the process at once and skips `finally` blocks. So while the server runs,
SIGTERM raises SystemExit (the `finally` that stops the child runs), and on Linux the child
also asks the kernel for SIGTERM when its parent dies, which covers a SIGKILLed server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent ends (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the SIGTERM handler below still stops the child


def start_worker_process(database_url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMNILOOP_DATABASE_URL=database_url)
    return subprocess.Popen([sys.executable, "-m", "omniloop.cli", "worker"], env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def worker_alongside(database_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """The worker child for as long as the block runs; stopped (SIGTERM, then SIGKILL after
    30 s) however the block ends."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    child = start_worker_process(database_url)
    try:
        yield child
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
