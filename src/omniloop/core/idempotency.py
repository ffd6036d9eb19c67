"""Idempotency keys: what a client sends so a retried change happens once.

Services that take a key (POS redemption, paying with points, adjustments) check it here, so
every one of them accepts and refuses keys the same way, whether called over HTTP or not.
"""

from __future__ import annotations

from omniloop.core.errors import N_, BadRequest, ValidationFailed

MAX_KEY_LENGTH = 100


class IdempotencyKeyRequired(BadRequest):
    code = "idempotency_key_required"
    message = N_("Send an 'Idempotency-Key' header (1–100 characters) so a retry cannot "
                 "apply the change twice.")


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    message = N_("This Idempotency-Key was already used for a different request.")


def require_key(value: str | None) -> str:
    """The key without surrounding blanks; refused when missing or too long."""
    key = (value or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyRequired()
    return key
