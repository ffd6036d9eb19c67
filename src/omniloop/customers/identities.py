"""Normalising identity values, so one person's identifiers compare equal however written.

Phones become E.164 (default region TW: 0912-345-678, 0912345678 and +886 912 345 678 are
one number); e-mails are trimmed and lower-cased; other kinds are trimmed.
"""

from __future__ import annotations

import re

import phonenumbers

from omniloop.customers.errors import InvalidIdentity
from omniloop.customers.models import IdentityKind

DEFAULT_REGION = "TW"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
_TOKEN = re.compile(r"^[\w.:@/+-]{1,128}$")


# The usual number at a Taiwanese counter — a mobile, typed nationally (0912-345-678) or
# internationally (+886 912 345 678) — is recognised from the library's own metadata for the
# default region (its national prefix, country code and mobile pattern): ~1 µs instead of
# the ~40 µs of a full parse and validation, for the same E.164 (tests compare both ways).
# Anything else — landlines, other countries, letters, full-width digits — is parsed.
_METADATA = phonenumbers.PhoneMetadata.metadata_for_region(DEFAULT_REGION)
if _METADATA is None or _METADATA.mobile is None:
    raise RuntimeError(f"phonenumbers has no mobile numbers for {DEFAULT_REGION}")
_COUNTRY_CODE = str(_METADATA.country_code)
_TYPED_MOBILE = re.compile(
    rf"(?:{re.escape(str(_METADATA.national_prefix))}|\+{_COUNTRY_CODE})([0-9]+)")
_MOBILE = re.compile(str(_METADATA.mobile.national_number_pattern))
_SEPARATORS = str.maketrans("", "", " -")


def _usual_mobile(value: str) -> str | None:
    typed = _TYPED_MOBILE.fullmatch(value.translate(_SEPARATORS))
    if typed is None or _MOBILE.fullmatch(typed.group(1)) is None:
        return None
    return f"+{_COUNTRY_CODE}{typed.group(1)}"


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    if region == DEFAULT_REGION:
        usual = _usual_mobile(value)
        if usual is not None:
            return usual
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity(kind="phone", value=value) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity(kind="phone", value=value)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize(kind: IdentityKind, value: str) -> str:
    """The canonical form of `value`, or InvalidIdentity naming the kind and value."""
    text = value.strip()
    if kind is IdentityKind.phone:
        return normalize_phone(text)
    if kind is IdentityKind.email:
        text = text.lower()
        if len(text) > 254 or not _EMAIL.match(text):
            raise InvalidIdentity(kind="email", value=value)
        return text
    if kind is IdentityKind.line:
        # LINE user ids are 'U' + 32 lowercase hex digits, per the Messaging API.
        if not _LINE_USER_ID.match(text):
            raise InvalidIdentity(kind="line", value=value)
        return text
    if not _TOKEN.match(text):
        raise InvalidIdentity(kind=kind.value, value=value)
    return text


def mask_phone(e164: str) -> str:
    """A phone as the cashier may see it: enough to ask "0912-***-678?", not to copy it.

    Taiwanese numbers in national form, others international; the first four and last
    three digits stay, the rest become *.
    """
    try:
        number = phonenumbers.parse(e164, None)
        national = phonenumbers.region_code_for_number(number) == "TW"
        text = phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.NATIONAL if national
            else phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        text = e164
    digits = sum(ch.isdigit() for ch in text)
    seen = 0
    out = []
    for ch in text:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= 4 or seen > digits - 3 else "*")
        else:
            out.append("-" if ch == " " else ch)
    return "".join(out)
