"""The arithmetic of discounts and refunds: exact to the minor unit."""

from __future__ import annotations

import random

import pytest

from omniloop.orders import pricing


def test_allocate_in_proportion_with_largest_remainders() -> None:
    assert pricing.allocate(3000, [25000, 8000]) == [2273, 727]
    assert pricing.allocate(100, [100, 100, 100]) == [34, 33, 33]  # ties: the earlier line
    assert pricing.allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert pricing.allocate(0, [5, 7]) == [0, 0]
    assert pricing.allocate(0, [0, 0]) == [0, 0]
    assert pricing.allocate(12, [0, 12]) == [0, 12]
    with pytest.raises(ValueError, match="between 0"):
        pricing.allocate(13, [0, 12])


def test_allocate_is_exact_and_within_each_weight() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        weights = [rng.choice([0, 1, 3, 99, 12345]) for _ in range(rng.randint(1, 8))]
        amount = rng.randint(0, sum(weights))
        shares = pricing.allocate(amount, weights)
        assert sum(shares) == amount
        assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))


def test_net_amounts_add_up_to_the_order_total() -> None:
    assert pricing.net_amounts([25000, 8000], 3000) == [22727, 7273]
    assert pricing.net_amounts([500], 500) == [0]


def test_returning_units_one_by_one_or_at_once_is_the_same() -> None:
    net, quantity = 10000, 3
    singles = [pricing.returned_value(net, quantity, done, 1) for done in range(quantity)]
    assert singles == [3333, 3333, 3334]
    assert sum(singles) == pricing.returned_value(net, quantity, 0, quantity) == net
    assert pricing.returned_value(net, quantity, 1, 2) == net - 3333
    with pytest.raises(ValueError, match="more units"):
        pricing.returned_value(net, quantity, 2, 2)


def test_cap_cuts_from_the_end() -> None:
    assert pricing.cap([500, 300, 200], 650) == [500, 150, 0]
    assert pricing.cap([500, 300], 1000) == [500, 300]
    assert pricing.cap([500, 300], 0) == [0, 0]
