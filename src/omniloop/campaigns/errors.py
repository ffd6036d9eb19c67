"""Errors of the campaigns module.

The refusals of a coupon (`CouponRefused` subclasses) are what a cashier reads: each says
exactly why, with the date, store or amount that matters, so nobody has to guess. Their codes
are stable for POS integrations; `/pos/validate` returns them as the reason, `/pos/redeem`
answers them as 409s.
"""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, NotFound, ValidationFailed


class CampaignNotFound(NotFound):
    code = "campaign_not_found"
    message = N_("Campaign not found.")


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    message = N_("No coupon has the code '{code}'. Check it and try again.")


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"
    message = N_("Redemption not found.")


class CodeBatchNotFound(NotFound):
    code = "code_batch_not_found"
    message = N_("Code batch not found.")


class CampaignInvalid(ValidationFailed):
    code = "campaign_invalid"
    message = N_("The campaign's settings do not fit together.")


class CampaignStatusConflict(Conflict):
    code = "campaign_status_conflict"
    message = N_("A campaign that is {status} cannot be {action}.")


class CampaignLocked(Conflict):
    code = "campaign_locked"
    message = N_("'{field}' cannot change once coupons have been claimed or redeemed.")


class SharedCodeTaken(Conflict):
    code = "code_taken"
    message = N_("The code '{code}' is already used by another campaign or coupon.")


class VoidWindowPassed(Conflict):
    code = "void_window_passed"
    message = N_("A redemption can be voided within {minutes} minutes; this one was made at "
                 "{time}.")


# --- why a coupon cannot be used or claimed ---------------------------------------------

class CouponRefused(Conflict):
    """A coupon that exists but cannot be used here and now."""

    code = "coupon_refused"


class CampaignNotActive(CouponRefused):
    code = "campaign_not_active"
    message = N_("This campaign is not running (it is {status}).")


class CampaignNotStarted(CouponRefused):
    code = "campaign_not_started"
    message = N_("This campaign starts on {date}.")


class CampaignEnded(CouponRefused):
    code = "campaign_ended"
    message = N_("This campaign ended on {date}.")


class CouponNotYetValid(CouponRefused):
    code = "coupon_not_yet_valid"
    message = N_("This coupon can be used from {date}.")


class CouponExpired(CouponRefused):
    code = "coupon_expired"
    message = N_("This coupon expired on {date}.")


class CouponAlreadyRedeemed(CouponRefused):
    code = "coupon_already_redeemed"
    message = N_("This coupon was already used at {store} on {time}.")


class CouponCancelled(CouponRefused):
    code = "coupon_cancelled"
    message = N_("This coupon has been cancelled.")


class StoreNotEligible(CouponRefused):
    code = "store_not_eligible"
    message = N_("This coupon cannot be used at {store}.")


class MinimumSpendNotMet(CouponRefused):
    code = "minimum_spend_not_met"
    message = N_("Minimum spend is {minimum}; this basket comes to {total}.")


class LinesRequired(CouponRefused):
    code = "basket_lines_required"
    message = N_("This coupon applies to certain items only: send the basket's lines.")


class NoEligibleItems(CouponRefused):
    code = "no_eligible_items"
    message = N_("None of the items in this basket qualify for this coupon.")


class FreeItemNotInBasket(CouponRefused):
    code = "free_item_not_in_basket"
    message = N_("Add {sku} to the basket to use this coupon.")


class OutsideHours(CouponRefused):
    code = "outside_hours"
    message = N_("This coupon can be used only {schedule}.")


class QuotaExhausted(CouponRefused):
    code = "quota_exhausted"
    message = N_("All {quota} coupons of this campaign have been used.")


class BudgetExhausted(CouponRefused):
    code = "budget_exhausted"
    message = N_("This campaign's budget is used up.")


class CustomerLimitReached(CouponRefused):
    code = "customer_limit_reached"
    message = N_("This customer has already used this offer the allowed {limit} time(s).")


class NotCombinable(CouponRefused):
    code = "not_combinable"
    message = N_("This coupon cannot be combined with '{other}' in the same basket.")


class NewCustomersOnly(CouponRefused):
    code = "new_customers_only"
    message = N_("This offer is for new customers only.")


class ClaimChannelNotAllowed(CouponRefused):
    code = "claim_channel_not_allowed"
    message = N_("This offer cannot be claimed through {channel}.")


class ClaimLimitReached(CouponRefused):
    code = "claim_limit_reached"
    message = N_("You have already claimed this offer the allowed {limit} time(s).")


class ClaimsExhausted(CouponRefused):
    code = "claims_exhausted"
    message = N_("All coupons of this offer have been claimed.")


class NoCodesLeft(CouponRefused):
    code = "no_codes_left"
    message = N_("No codes are left to give out for this campaign.")
