"""Signed QR tokens: a coupon or a member card that cannot be forged or altered.

DESIGN invariant 5: a token is signed per tenant so a POS can check its authenticity even
while offline, yet redemption is decided by the server alone. Ed25519 gives exactly that
split: the server keeps the private key, any POS may hold the tenant's *public* key, and
holding it lets a POS verify but never mint tokens (an HMAC key would let it do both).

Keys are derived, not stored: HKDF-SHA256 over the application secret and the tenant id
yields each tenant's 32-byte Ed25519 seed, so there is no key table to migrate, back up or
leak. The token carries a key id (`kid`) so keys can rotate later without ambiguity.

Layout (version 1), 106 bytes before encoding; see docs/qr-tokens.md:

    offset  size  field
         0     1  version (1)
         1     1  kind (1 = coupon, 2 = member, 3 = receipt)
         2    16  tenant id  (26-char id, 128-bit big-endian integer)
        18    16  subject id (coupon id or customer id, same packing)
        34     4  expires_at, uint32 big-endian unix seconds
        38     4  kid: first 4 bytes of SHA-256(raw public key)
        42    64  Ed25519 signature over bytes 0..41

Text form: "OL1" + RFC 4648 base32 of those bytes, upper case, no padding (173 characters).
Upper-case base32 stays inside the QR *alphanumeric* mode (5.5 bits per character), which
makes a smaller symbol than base64 would in byte mode (8 bits per character).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from omniloop.core.clock import utcnow
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.settings import get_settings

TOKEN_PREFIX = "OL1"
VERSION = 1
ALGORITHM = "Ed25519"
HKDF_INFO = b"omniloop qr signing v1\x00"

_ID_BYTES = 16
_HEADER = struct.Struct(">BB16s16sI4s")
_SIGNATURE_BYTES = 64
_RAW_BYTES = _HEADER.size + _SIGNATURE_BYTES            # 42 + 64 = 106
_BODY_CHARS = -(-_RAW_BYTES * 8 // 5)                    # ceil(848 / 5) = 170
_PADDING = "=" * (-_BODY_CHARS % 8)
TOKEN_LENGTH = len(TOKEN_PREFIX) + _BODY_CHARS          # 173

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_VALUE = {c: i for i, c in enumerate(_CROCKFORD)}
# 26 characters carry 130 bits; ids from core/ids.py start with 0-7 (a 48-bit millisecond
# time shifted left by 80), so they fit in 128 bits and pack losslessly into 16 bytes.
_ID_PATTERN = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_TOKEN_PATTERN = re.compile(rf"{TOKEN_PREFIX}[A-Z2-7]{{{_BODY_CHARS}}}")


class TokenKind(StrEnum):
    """What a token stands for; the byte in the token is `_KIND_CODES[kind]`."""

    COUPON = "coupon"
    MEMBER = "member"
    RECEIPT = "receipt"  # a receipt QR (subject = loops receipt id: order, store and staff)


_KIND_CODES: dict[TokenKind, int] = {TokenKind.COUPON: 1, TokenKind.MEMBER: 2,
                                     TokenKind.RECEIPT: 3}
_KINDS_BY_CODE = {code: kind for kind, code in _KIND_CODES.items()}


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says. Authentic, but not yet a decision: the server still
    checks the coupon's or customer's state before anything is redeemed."""

    tenant_id: str
    kind: TokenKind
    subject_id: str
    expires_at: datetime
    kid: str


class TokenInvalid(OmniloopError):
    code = "token_invalid"
    status = 400
    message = N_("This QR code is not valid: it is damaged, incomplete or was not issued "
                 "by this system.")


class TokenUnknownKey(TokenInvalid):
    """Signed with a key the server no longer derives (the secret key changed, or a future
    key rotation retired it). Same code as any invalid token; the message says why."""

    message = N_("This QR code was signed with a key that is no longer in use. "
                 "Ask the customer to open a fresh code.")


class TokenWrongTenant(OmniloopError):
    # 400 rather than 404: nothing is looked up, the token names its brand in the clear,
    # and a cashier needs to hear "wrong brand", not "not found".
    code = "token_wrong_tenant"
    status = 400
    message = N_("This QR code belongs to another brand and cannot be used here.")


class TokenExpired(OmniloopError):
    code = "token_expired"
    status = 400
    message = N_("This QR code expired at {expired_at}. Ask the customer to open a fresh "
                 "code.")

    def __init__(self, expires_at: datetime) -> None:
        # Shown in the deployment's default time zone with its offset, so a cashier reads
        # local time and the offset keeps it unambiguous; callers keep the exact instant.
        local = expires_at.astimezone(ZoneInfo(get_settings().default_timezone))
        super().__init__(expired_at=local.isoformat(sep=" "))
        self.expires_at = expires_at


class TokenWrongKind(OmniloopError):
    code = "token_wrong_kind"
    status = 400
    message = N_("This QR code is of another kind and cannot be used here.")


_WRONG_KIND_MESSAGES: dict[TokenKind, str] = {
    TokenKind.COUPON: N_("This QR code is not a coupon."),
    TokenKind.MEMBER: N_("This QR code is not a member card."),
    TokenKind.RECEIPT: N_("This QR code is not a receipt."),
}


# --- keys ----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _private_key(secret: str, tenant_id: str) -> Ed25519PrivateKey:
    """The tenant's signing key. Cached by (secret, tenant) so a changed secret is never
    served from the cache, and verifying a stream of scans costs no repeated HKDF."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=HKDF_INFO + tenant_id.encode("utf-8")).derive(secret.encode("utf-8"))
    return Ed25519PrivateKey.from_private_bytes(seed)


def _tenant_key(tenant_id: str) -> Ed25519PrivateKey:
    return _private_key(get_settings().resolved_secret_key(), tenant_id)


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    """The 4-byte key id of a raw Ed25519 public key: enough to tell a handful of keys apart
    during a rotation, short enough not to grow the QR code."""
    return hashlib.sha256(public_key).digest()[:4]


def public_key_info(tenant_id: str) -> dict[str, str]:
    """The tenant's verification key, for the POS offline-verification endpoint.

    Public by nature: it lets a POS check tokens while offline but not create them. Raw
    base64url (32 bytes) for constrained clients, PEM (SubjectPublicKeyInfo) for libraries.
    """
    public = _tenant_key(tenant_id).public_key()
    raw = _raw_public_key(public)
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "tenant_id": tenant_id,
        "kid": key_id(raw).hex(),
        "alg": ALGORITHM,
        "public_key": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"),
        "public_key_pem": pem.decode("ascii"),
        "token_prefix": TOKEN_PREFIX,
    }


# --- ids -----------------------------------------------------------------------------------


def _pack_id(value: str, what: str) -> bytes:
    if not _ID_PATTERN.fullmatch(value):
        raise ValueError(f"{what} is not an omniloop id: {value!r}")
    number = 0
    for char in value:
        number = number * 32 + _CROCKFORD_VALUE[char]
    return number.to_bytes(_ID_BYTES, "big")


def _unpack_id(packed: bytes) -> str:
    number = int.from_bytes(packed, "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[number & 31])
        number >>= 5
    return "".join(reversed(chars))


# --- tokens --------------------------------------------------------------------------------


def sign_token(tenant_id: str, kind: TokenKind, subject_id: str, expires_at: datetime) -> str:
    """A signed token for a coupon (subject = coupon id) or a member card (customer id).

    The expiry is truncated to whole seconds (never later than asked). Bad arguments are
    programming errors and raise `ValueError`, not a user-facing error.
    """
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    seconds = int(expires_at.timestamp())
    if not 0 < seconds < 2**32:
        raise ValueError(f"expires_at out of range for a token: {expires_at.isoformat()}")
    key = _tenant_key(tenant_id)
    header = _HEADER.pack(VERSION, _KIND_CODES[TokenKind(kind)],
                          _pack_id(tenant_id, "tenant_id"), _pack_id(subject_id, "subject_id"),
                          seconds, key_id(_raw_public_key(key.public_key())))
    raw = header + key.sign(header)
    return TOKEN_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=")


def _normalize(text: str) -> str:
    # Scanners and keyboard wedges may add whitespace or lower-case the text; neither
    # changes the bytes, so accept them rather than refuse a genuine code.
    return "".join(text.split()).upper()


def looks_like_token(text: str) -> bool:
    """Whether the text has the shape of a token (not whether it is genuine).

    Lets one POS input take either a typed coupon code or a scanned token and send each to
    the right check; the exact length and alphabet make a collision with a code unlikely.
    """
    return bool(_TOKEN_PATTERN.fullmatch(_normalize(text)))


def _decode(token: str) -> tuple[bytes, bytes]:
    """Header and signature bytes, or TokenInvalid for anything that is not a well-formed,
    canonically encoded version-1 token."""
    text = _normalize(token)
    if not _TOKEN_PATTERN.fullmatch(text):
        raise TokenInvalid()
    body = text[len(TOKEN_PREFIX):]
    try:
        raw = base64.b32decode(body + _PADDING)
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid() from exc
    # The last character carries two unused bits; refusing non-zero ones keeps exactly one
    # spelling per token, so a token string can serve as a key (dedup, logs) as it is.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != body:
        raise TokenInvalid()
    return raw[:_HEADER.size], raw[_HEADER.size:]


def verify_token(token: str, *, tenant_id: str, kind: TokenKind,
                 now: datetime | None = None) -> TokenClaims:
    """The claims of a genuine, unexpired token of this tenant and kind.

    The signature is checked with the key of the tenant *named in the token* before the
    tenant is compared, so a forged token is "invalid", and only a genuine token of another
    brand is reported as such. A valid signature proves authenticity only: the caller still
    decides, against the database, whether the coupon or member may be used.
    """
    header, signature = _decode(token)
    version, kind_code, packed_tenant, packed_subject, seconds, kid = _HEADER.unpack(header)
    if version != VERSION or kind_code not in _KINDS_BY_CODE:
        raise TokenInvalid()
    token_tenant = _unpack_id(packed_tenant)
    key = _private_key(get_settings().resolved_secret_key(), token_tenant)
    public = key.public_key()
    if kid != key_id(_raw_public_key(public)):
        raise TokenUnknownKey()
    try:
        public.verify(signature, header)
    except InvalidSignature as exc:
        raise TokenInvalid() from exc
    if token_tenant != tenant_id:
        raise TokenWrongTenant()
    token_kind = _KINDS_BY_CODE[kind_code]
    if token_kind != kind:
        raise TokenWrongKind(_WRONG_KIND_MESSAGES[TokenKind(kind)])
    expires_at = datetime.fromtimestamp(seconds, UTC)
    current = now or utcnow()
    if current.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if current >= expires_at:
        raise TokenExpired(expires_at)
    return TokenClaims(tenant_id=token_tenant, kind=token_kind,
                       subject_id=_unpack_id(packed_subject), expires_at=expires_at,
                       kid=kid.hex())
