"""Channel credentials at rest: encrypted with a key derived from the instance's secret key.

A database dump alone then does not hand out a brand's LINE token or SMTP password. The key
is HKDF-SHA256 of the secret key with a label used for nothing else, so it never doubles as
the session-signing key; rotating the secret key makes stored credentials unreadable, which
`decrypt` reports as `CredentialsUnreadable` (re-enter them in the admin).
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from omniloop.core.settings import get_settings
from omniloop.messaging.errors import CredentialsUnreadable


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"omniloop.messaging.credentials").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(values: dict[str, Any]) -> str:
    return _fernet(get_settings().resolved_secret_key()).encrypt(
        json.dumps(values, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        data = _fernet(get_settings().resolved_secret_key()).decrypt(token.encode())
    except InvalidToken:
        raise CredentialsUnreadable() from None
    value = json.loads(data)
    if not isinstance(value, dict):
        raise CredentialsUnreadable()
    return value
