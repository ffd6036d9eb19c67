"""The arithmetic of orders and refunds, in integer minor units. Pure functions, no I/O.

Two rules keep refunds exact:

* the order-level discount is shared among the lines in proportion to their totals, with
  the leftover minor units going to the largest fractions (ties: the earlier line), so the
  lines' net amounts add up to the order total to the unit;
* returning units of a line is priced cumulatively: after k of n units are back, the line has
  refunded `net × k // n`. Returning the units one by one or all at once comes to the same
  amount, and returning all of them comes to the line's net exactly.
"""

from __future__ import annotations


def line_total(quantity: int, unit_price_minor: int, discount_minor: int) -> int:
    """quantity × unit price − discount (the caller checks the discount fits)."""
    return quantity * unit_price_minor - discount_minor


def allocate(amount: int, weights: list[int]) -> list[int]:
    """Split `amount` (0 ≤ amount ≤ sum of weights) in proportion to `weights`; the parts
    add up to `amount` exactly and none exceeds its weight."""
    total = sum(weights)
    if amount < 0 or amount > total:
        raise ValueError("amount must lie between 0 and the sum of the weights")
    if total == 0:
        return [0 for _ in weights]
    shares = [amount * weight // total for weight in weights]
    remainders = [amount * weight % total for weight in weights]
    leftover = amount - sum(shares)
    # Fewer leftover units than lines with a fraction, so each gets at most one.
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:leftover]:
        shares[index] += 1
    return shares


def net_amounts(line_totals: list[int], order_discount: int) -> list[int]:
    """Each line's total less its share of the order-level discount."""
    shares = allocate(order_discount, line_totals)
    return [total - share for total, share in zip(line_totals, shares, strict=True)]


def returned_value(net_minor: int, quantity: int, already_returned: int, returning: int) -> int:
    """The refund for returning `returning` more units of a line of `quantity` units, of which
    `already_returned` came back before."""
    if quantity <= 0 or already_returned < 0 or returning < 0 or (
            already_returned + returning > quantity):
        raise ValueError("cannot return more units than the line has")
    after = net_minor * (already_returned + returning) // quantity
    before = net_minor * already_returned // quantity
    return after - before


def cap(amounts: list[int], limit: int) -> list[int]:
    """`amounts` reduced, from the last one backwards, until they add up to at most `limit`."""
    capped = list(amounts)
    excess = sum(capped) - max(limit, 0)
    for index in reversed(range(len(capped))):
        if excess <= 0:
            break
        cut = min(excess, capped[index])
        capped[index] -= cut
        excess -= cut
    return capped
