"""Errors of the orders module. Each names the request field at fault where there is one."""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, NotFound, ValidationFailed


class OrderNotFound(NotFound):
    code = "order_not_found"
    message = N_("Order not found.")


class OrderConflict(Conflict):
    code = "order_conflict"
    message = N_("An order with the external id '{external_id}' already exists with "
                 "different content.")


class StoreRequired(ValidationFailed):
    code = "store_required"
    message = N_("An order in a store needs store_id or store_code.")


class StoreNotAllowed(ValidationFailed):
    code = "store_not_allowed"
    message = N_("An online order has no store: leave out store_id and store_code.")


class StoreBound(ValidationFailed):
    code = "store_required"
    message = N_("A store's key or staff can only record orders in that store: send its "
                 "store_id or store_code.")


class AmbiguousStore(ValidationFailed):
    code = "ambiguous_store"
    message = N_("Give store_id or store_code, not both.")


class AmbiguousCustomer(ValidationFailed):
    code = "ambiguous_customer"
    message = N_("Give customer_id or identities, not both.")


class TraitsWithoutIdentities(ValidationFailed):
    code = "traits_need_identities"
    message = N_("Traits can only be sent together with identities.")


class CurrencyMismatch(ValidationFailed):
    code = "currency_mismatch"
    message = N_("This brand's orders are in {currency}.")


class DiscountTooLarge(ValidationFailed):
    code = "discount_too_large"
    message = N_("The discount ({discount}) is larger than the amount it applies to "
                 "({amount}).")


class TotalMismatch(ValidationFailed):
    code = "total_mismatch"
    message = N_("The total sent ({given}) differs from the total of the lines and "
                 "discounts ({computed}).")


class PaidInFuture(ValidationFailed):
    code = "paid_at_in_future"
    message = N_("The payment time is in the future.")


class RefundTimeInvalid(ValidationFailed):
    code = "refunded_at_invalid"
    message = N_("The refund time must lie between the order's payment and now.")


class RefundConflict(Conflict):
    code = "refund_conflict"
    message = N_("A refund with the external id '{external_id}' already exists on this "
                 "order with different content.")


class AmountOrLines(ValidationFailed):
    code = "refund_amount_or_lines"
    message = N_("Give amount_minor or lines, not both.")


class LineReference(ValidationFailed):
    code = "line_reference"
    message = N_("Name each line by exactly one of line_id or position.")


class LineNotInOrder(ValidationFailed):
    code = "order_line_not_found"
    message = N_("Line '{line}' is not part of this order.")


class DuplicateRefundLine(ValidationFailed):
    code = "duplicate_refund_line"
    message = N_("Line {position} is listed more than once.")


class RefundExceedsOrder(ValidationFailed):
    code = "refund_exceeds_order"
    message = N_("The refund ({amount}) is larger than what is left to refund on this order "
                 "({remaining}).")


class RefundExceedsLine(ValidationFailed):
    code = "refund_exceeds_line"
    message = N_("Line {position} has {remaining} left to refund, not {quantity}.")


class RefundAmountZero(ValidationFailed):
    code = "refund_amount_zero"
    message = N_("These lines cost nothing: there is no amount to refund.")


class NothingToRefund(Conflict):
    code = "nothing_to_refund"
    message = N_("Nothing is left to refund on this order.")
