"""Identifiers: 26-character, time-ordered, URL-safe strings (ULID layout).

Generated in the application rather than by the database so every table can key on
(tenant_id, id) on SQLite and PostgreSQL alike, and rows sort by creation time.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
