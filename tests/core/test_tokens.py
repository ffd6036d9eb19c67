"""Signed QR tokens: genuine ones verify, anything forged, altered or misplaced is refused."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from omniloop.core import i18n
from omniloop.core.errors import OmniloopError
from omniloop.core.ids import new_id
from omniloop.core.settings import get_settings
from omniloop.core.tokens import (
    TOKEN_LENGTH,
    TokenExpired,
    TokenInvalid,
    TokenKind,
    TokenWrongKind,
    TokenWrongTenant,
    looks_like_token,
    public_key_info,
    sign_token,
    verify_token,
)

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def _raw(token: str) -> bytes:
    body = token[3:]
    return base64.b32decode(body + "=" * (-len(body) % 8))


def _text(raw: bytes) -> str:
    return "OL1" + base64.b32encode(raw).decode().rstrip("=")


def test_round_trip_for_both_kinds() -> None:
    tenant, coupon, customer = new_id(), new_id(), new_id()
    token = sign_token(tenant, TokenKind.COUPON, coupon, LATER)
    claims = verify_token(token, tenant_id=tenant, kind=TokenKind.COUPON, now=NOW)
    assert (claims.tenant_id, claims.kind, claims.subject_id) == (tenant, TokenKind.COUPON,
                                                                  coupon)
    assert claims.expires_at == LATER
    assert claims.kid == public_key_info(tenant)["kid"]

    member = sign_token(tenant, TokenKind.MEMBER, customer, NOW + timedelta(minutes=5))
    assert verify_token(member, tenant_id=tenant, kind=TokenKind.MEMBER,
                        now=NOW).subject_id == customer


@pytest.mark.parametrize("subject", ["00000000000000000000000000", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
                                     "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
def test_ids_round_trip_exactly_at_the_edges(subject: str) -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, subject, LATER)
    assert verify_token(token, tenant_id=tenant, kind=TokenKind.COUPON,
                        now=NOW).subject_id == subject


@pytest.mark.parametrize("bad", ["8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01arz3ndektsv4rrffq69g5fav",
                                 "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAU"])
def test_signing_refuses_what_is_not_an_id(bad: str) -> None:
    with pytest.raises(ValueError, match="not an omniloop id"):
        sign_token(new_id(), TokenKind.COUPON, bad, LATER)


def test_signing_needs_an_aware_expiry() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_token(new_id(), TokenKind.COUPON, new_id(), datetime(2030, 1, 1))


def test_expiry_is_truncated_to_the_second_never_later() -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, new_id(), LATER + timedelta(milliseconds=999))
    assert verify_token(token, tenant_id=tenant, kind=TokenKind.COUPON,
                        now=NOW).expires_at == LATER


def test_coupon_token_is_173_chars_of_the_qr_alphanumeric_set() -> None:
    token = sign_token(new_id(), TokenKind.COUPON, new_id(), LATER)
    assert len(token) == TOKEN_LENGTH == 173
    assert set(token) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert looks_like_token(token)


def test_every_single_byte_alteration_is_refused() -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, new_id(), LATER)
    raw = _raw(token)
    assert len(raw) == 106
    for position in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            altered = bytearray(raw)
            altered[position] ^= flip
            with pytest.raises(TokenInvalid) as caught:
                verify_token(_text(bytes(altered)), tenant_id=tenant, kind=TokenKind.COUPON,
                             now=NOW)
            assert caught.value.code == "token_invalid", position


def test_a_non_canonical_spelling_of_the_same_bytes_is_refused() -> None:
    """The last base32 character has two unused bits; setting them changes the text but not
    the bytes. Exactly one spelling is accepted, so a token string can serve as a key."""
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, new_id(), LATER)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    last = alphabet.index(token[-1])
    assert last & 0b11 == 0
    twin = token[:-1] + alphabet[last | 0b01]
    assert _raw(twin) == _raw(token)
    with pytest.raises(TokenInvalid):
        verify_token(twin, tenant_id=tenant, kind=TokenKind.COUPON, now=NOW)


def test_scanner_whitespace_and_lower_case_are_tolerated() -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, new_id(), LATER)
    sloppy = " " + token.lower() + "\r\n"
    assert looks_like_token(sloppy)
    assert verify_token(sloppy, tenant_id=tenant, kind=TokenKind.COUPON, now=NOW)


def test_another_brands_token_is_refused_as_such() -> None:
    mine, theirs = new_id(), new_id()
    token = sign_token(theirs, TokenKind.COUPON, new_id(), LATER)
    with pytest.raises(TokenWrongTenant) as caught:
        verify_token(token, tenant_id=mine, kind=TokenKind.COUPON, now=NOW)
    assert caught.value.code == "token_wrong_tenant"
    assert "another brand" in str(caught.value)


def test_a_forged_tenant_is_invalid_not_another_brand() -> None:
    """Re-labelling a genuine token with another tenant breaks its signature: the forger
    learns nothing from a 'belongs to another brand' answer."""
    mine, theirs = new_id(), new_id()
    raw = bytearray(_raw(sign_token(theirs, TokenKind.COUPON, new_id(), LATER)))
    raw[2:18] = _pack(mine)
    raw[38:42] = bytes.fromhex(public_key_info(mine)["kid"])   # even with my key id
    with pytest.raises(TokenInvalid) as caught:
        verify_token(_text(bytes(raw)), tenant_id=mine, kind=TokenKind.COUPON, now=NOW)
    assert type(caught.value) is TokenInvalid   # the signature failed, not the key id


def _pack(ulid: str) -> bytes:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = 0
    for char in ulid:
        number = number * 32 + alphabet.index(char)
    return number.to_bytes(16, "big")


def test_expired_token_is_refused_with_its_expiry() -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.MEMBER, new_id(), NOW + timedelta(minutes=5))
    assert verify_token(token, tenant_id=tenant, kind=TokenKind.MEMBER,
                        now=NOW + timedelta(minutes=4, seconds=59))
    with pytest.raises(TokenExpired) as caught:
        verify_token(token, tenant_id=tenant, kind=TokenKind.MEMBER,
                     now=NOW + timedelta(minutes=5))
    assert caught.value.code == "token_expired"
    assert caught.value.expires_at == NOW + timedelta(minutes=5)
    # 04:05 UTC in the default time zone (Asia/Taipei), offset included.
    assert "2026-11-25 12:05:00+08:00" in str(caught.value)
    token_now = i18n.current_locale.set("zh_TW")
    try:
        assert "2026-11-25 12:05:00+08:00" in caught.value.localized()
        assert "過期" in caught.value.localized()
    finally:
        i18n.current_locale.reset(token_now)


def test_default_now_is_the_clock() -> None:
    tenant = new_id()
    past = sign_token(tenant, TokenKind.COUPON, new_id(), datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(TokenExpired):
        verify_token(past, tenant_id=tenant, kind=TokenKind.COUPON)


@pytest.mark.parametrize(("signed", "expected", "words"), [
    (TokenKind.MEMBER, TokenKind.COUPON, "not a coupon"),
    (TokenKind.COUPON, TokenKind.MEMBER, "not a member card"),
])
def test_wrong_kind_is_refused(signed: TokenKind, expected: TokenKind, words: str) -> None:
    tenant = new_id()
    token = sign_token(tenant, signed, new_id(), LATER)
    with pytest.raises(TokenWrongKind) as caught:
        verify_token(token, tenant_id=tenant, kind=expected, now=NOW)
    assert caught.value.code == "token_wrong_kind"
    assert words in str(caught.value)


@pytest.mark.parametrize("garbage", [
    "", "OL1", "SUMMER2026", "OL1" + "A" * 170, "OL1" + "A" * 169, "OL1" + "A" * 171,
    "OL1" + "1" * 170, "OL2" + "A" * 170, "OL1" + "é" * 170, "\x00" * 173, "OL1 " * 60,
    "https://example.com/c/OL1ABC",
])
def test_garbage_is_invalid_not_a_crash(garbage: str) -> None:
    with pytest.raises(TokenInvalid) as caught:
        verify_token(garbage, tenant_id=new_id(), kind=TokenKind.COUPON, now=NOW)
    assert isinstance(caught.value, OmniloopError)
    assert (caught.value.code, caught.value.status) == ("token_invalid", 400)


def test_unknown_version_and_kind_bytes_are_invalid() -> None:
    tenant = new_id()
    raw = bytearray(_raw(sign_token(tenant, TokenKind.COUPON, new_id(), LATER)))
    for position, value in ((0, 2), (1, 0), (1, 3)):
        altered = bytearray(raw)
        altered[position] = value
        with pytest.raises(TokenInvalid):
            verify_token(_text(bytes(altered)), tenant_id=tenant, kind=TokenKind.COUPON,
                         now=NOW)


def test_looks_like_token_tells_codes_from_tokens() -> None:
    assert not looks_like_token("SUMMER2026")
    assert not looks_like_token("OL1ABC")
    assert not looks_like_token("")
    assert looks_like_token(sign_token(new_id(), TokenKind.MEMBER, new_id(), LATER))


def test_changing_the_secret_retires_every_token(monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = new_id()
    token = sign_token(tenant, TokenKind.COUPON, new_id(), LATER)
    old_kid = public_key_info(tenant)["kid"]
    monkeypatch.setattr(get_settings(), "secret_key", "another-secret")
    assert public_key_info(tenant)["kid"] != old_kid
    with pytest.raises(TokenInvalid) as caught:
        verify_token(token, tenant_id=tenant, kind=TokenKind.COUPON, now=NOW)
    assert caught.value.code == "token_invalid"
    assert "no longer in use" in str(caught.value)


def test_keys_are_per_tenant_and_deterministic() -> None:
    first, second = new_id(), new_id()
    assert public_key_info(first) == public_key_info(first)
    assert public_key_info(first)["public_key"] != public_key_info(second)["public_key"]


def _pos_verify_offline(token: str, key_info: dict[str, str], now: datetime) -> dict[str, object]:
    """What a POS does with nothing but the published key and `cryptography`."""
    assert token.startswith("OL1")
    body = token[3:]
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    header, signature = raw[:42], raw[42:]
    version, kind, tenant, subject, expires, kid = struct.unpack(">BB16s16sI4s", header)
    if kid.hex() != key_info["kid"]:
        raise InvalidSignature("unknown key id")
    public_raw = base64.urlsafe_b64decode(key_info["public_key"] + "==")
    Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, header)
    pem_key = serialization.load_pem_public_key(key_info["public_key_pem"].encode())
    assert isinstance(pem_key, Ed25519PublicKey)
    pem_key.verify(signature, header)
    return {"version": version, "kind": kind, "expired": now.timestamp() >= expires,
            "subject": int.from_bytes(subject, "big"), "tenant": int.from_bytes(tenant, "big")}


def test_a_pos_verifies_offline_with_only_the_public_key() -> None:
    tenant, coupon = new_id(), new_id()
    info = public_key_info(tenant)
    assert info["alg"] == "Ed25519"
    assert len(base64.urlsafe_b64decode(info["public_key"] + "==")) == 32
    token = sign_token(tenant, TokenKind.COUPON, coupon, LATER)

    seen = _pos_verify_offline(token, info, NOW)
    assert seen == {"version": 1, "kind": 1, "expired": False,
                    "subject": int.from_bytes(_pack(coupon), "big"),
                    "tenant": int.from_bytes(_pack(tenant), "big")}

    altered = bytearray(_raw(token))
    altered[20] ^= 0x04
    with pytest.raises(InvalidSignature):
        _pos_verify_offline(_text(bytes(altered)), info, NOW)
    with pytest.raises(InvalidSignature):
        _pos_verify_offline(token, public_key_info(new_id()), NOW)
