"""Helpers for admin forms that call services."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError, ValidationFailed
from omniloop.core.i18n import gettext

WHOLE_ERROR = N_("Enter a whole number from {low} to {high}.")
MONEY_ERROR = N_("Enter an amount like 100 or 99.50.")


class FieldErrors:
    """What a form reader collects while it turns typed strings into values: one message
    per bad field (the first), translated, to show beside that field."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def fail(self, field: str, message: str, **params: Any) -> None:
        self.errors.setdefault(field, gettext(message).format(**params))

    def whole(self, field: str, text: str, low: int, high: int, *,
              optional: bool = False) -> int | None:
        """A whole number from `low` to `high`, typed with or without thousands separators
        (full-width characters too); None with the field's error when it is not one. A blank
        `optional` field is None without an error."""
        cleaned = unicodedata.normalize("NFKC", text).replace(",", "").strip()
        if not cleaned and optional:
            return None
        try:
            number = int(cleaned)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.fail(field, WHOLE_ERROR, low=f"{low:,}", high=f"{high:,}")
            return None
        return number


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


SOME_FIELDS_INVALID = ValidationFailed.message


def field_errors(exc: ValidationError, messages: dict[str, str], *,
                 fallback: str = SOME_FIELDS_INVALID,
                 model_field: str = "form") -> dict[str, str]:
    """One translated message per form field from a schema's validation errors.

    `messages` holds the message (an English msgid) per field; a field without one gets
    `fallback`, and an error of the whole model (no field) is shown at `model_field`.
    """
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = err.get("loc", ())
        field = str(loc[0]) if loc else ""
        errors.setdefault(field or model_field, gettext(messages.get(field, fallback)))
    return errors
