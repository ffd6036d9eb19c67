from __future__ import annotations

from decimal import Decimal

from omniloop.core.ids import new_id
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
