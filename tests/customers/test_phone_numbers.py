"""The usual Taiwanese mobile is recognised without a full parse: the answer must be the
library's, number for number, and everything else must still go through the library."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from omniloop.customers.errors import InvalidIdentity
from omniloop.customers.identities import _usual_mobile, normalize_phone


def _library(value: str) -> str | None:
    try:
        number = phonenumbers.parse(value, "TW")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _typed(rng: random.Random) -> str:
    head = rng.choice(("09", "09", "09", "9", "02", "04", "08", "07", "0", "00"))
    length = 8 if head == "09" and rng.random() < 0.8 else rng.choice((7, 8, 9))
    digits = "".join(rng.choice("0123456789") for _ in range(length))
    national = head + digits
    style = rng.randrange(6)
    if style == 0:
        return national
    if style == 1:
        return f"{national[:4]}-{national[4:7]}-{national[7:]}"
    if style == 2:
        return f"{national[:4]} {national[4:]}"
    if style == 3:
        return "+886" + national.removeprefix("0")
    if style == 4:
        return "+886 " + national[1:4] + " " + national[4:]
    return "+8860" + national[1:]  # a national prefix after the country code


def test_the_fast_path_answers_what_the_library_answers() -> None:
    rng = random.Random(20261125)
    fast = 0
    for _ in range(20_000):
        value = _typed(rng)
        expected = _library(value)
        if _usual_mobile(value) is not None:
            fast += 1
        if expected is None:
            with pytest.raises(InvalidIdentity):
                normalize_phone(value)
        else:
            assert normalize_phone(value) == expected, value
    assert fast > 2_000  # the fast path was taken often enough to mean something


@pytest.mark.parametrize("value", [
    "０９１２３４５６７８",  # full-width digits: the library's way
    "0912.345.678", "(09)12345678", "0800-FLOWERS", "+1 415 555 2671", "02-2345-6789",
])
def test_other_writings_go_through_the_library(value: str) -> None:
    assert _usual_mobile(value) is None
    expected = _library(value)
    if expected is None:
        with pytest.raises(InvalidIdentity):
            normalize_phone(value)
    else:
        assert normalize_phone(value) == expected
