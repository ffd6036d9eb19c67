from __future__ import annotations

from decimal import Decimal

from omniloop.core.ids import new_id, new_ids
from omniloop.core.money import format_money, minor_digits, to_major, to_minor


def test_twd_is_stored_in_minor_units_and_shown_whole() -> None:
    assert minor_digits("TWD") == 2
    assert to_minor(120, "TWD") == 12000
    assert to_minor("99.995", "TWD") == 10000
    assert to_major(12050, "TWD") == Decimal("120.5")
    assert format_money(12000, "TWD", "zh_TW") == "$120"
    assert format_money(123400, "TWD", "en") == "NT$1,234"
    assert format_money(123450, "TWD", "en") == "NT$1,234.50"
    assert format_money(500, "JPY", "en") == "¥500"


def test_ids_are_unique_sortable_and_url_safe() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 26 and i.isalnum() for i in ids)
    assert ids[0][:10] <= ids[-1][:10]


def test_bulk_ids_have_the_layout_of_new_id_and_come_sorted() -> None:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def decoded(text: str) -> int:
        value = 0
        for char in text:
            value = value * 32 + crockford.index(char)
        return value

    before = new_id()
    ids = new_ids(5000)
    after = new_id()
    assert new_ids(0) == []
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set(crockford) for i in ids)
    # The same 48-bit millisecond on top, so they sort with ids made one by one.
    assert all(before[:10] <= i[:10] <= after[:10] for i in ids)
    assert len({decoded(i) & (2 ** 80 - 1) for i in ids}) == 5000
