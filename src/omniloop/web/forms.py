"""Helpers for admin forms that call services."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi.responses import RedirectResponse

from omniloop.core.db import Session
from omniloop.core.errors import OmniloopError
from omniloop.core.i18n import gettext


def refused(session: Session, error: OmniloopError) -> str:
    """A service refused the change: discard whatever it flushed, return the message to show.

    A page that re-renders its form after a refusal returns normally, and the request's unit
    of work would then commit; rolling back here keeps a refused change from being half
    written.
    """
    session.rollback()
    return error.localized()


# `?done=<key>` after a successful POST shows one of these registered messages; an unknown
# key shows nothing, so a crafted link cannot put arbitrary text on an admin page.
_flashes: dict[str, str] = {}


def register_flash(key: str, msgid: str) -> None:
    _flashes[key] = msgid


def flash_message(done: str | None) -> str | None:
    return gettext(_flashes[done]) if done in _flashes else None


def redirect_done(path: str, done: str) -> RedirectResponse:
    """Post/redirect/get: back to `path`, which then shows the flash registered as `done`."""
    return RedirectResponse(f"{path}?{urlencode({'done': done})}", status_code=303)
