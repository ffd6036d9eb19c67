"""Signals: how one module lets others act, in the same transaction, on a change it made,
without importing them (orders must not import loyalty, which is built on orders).

A module declares a `Signal` and sends it; listeners connect in `omniloop.wiring`, which the
first `send` loads, so every path that makes the change (API, POS, imports, the demo, the CLI)
runs the same listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")

_wired = False


def _wire() -> None:
    global _wired
    if not _wired:
        import omniloop.wiring  # noqa: F401  (connects the listeners)

        _wired = True


class Signal(Generic[P]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[P, object]] = []

    def connect(self, listener: Callable[P, object]) -> Callable[P, object]:
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    def send(self, *args: P.args, **kwargs: P.kwargs) -> None:
        _wire()
        for listener in self._listeners:
            listener(*args, **kwargs)
