"""Refusals of the loops module, each with a stable code, an HTTP status and a message that
is also the gettext msgid (core/errors.py)."""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, NotFound, OmniloopError, ValidationFailed


class TouchpointNotFound(NotFound):
    code = "touchpoint_not_found"
    message = N_("Touchpoint not found.")


class TouchpointRetired(Conflict):
    code = "touchpoint_retired"
    message = N_("This touchpoint is retired: its code stays out of use. Create a new one.")


class TouchpointScanned(Conflict):
    code = "touchpoint_scanned"
    message = N_("This touchpoint has been scanned, so it cannot be deleted (its scans stay "
                 "in the loop report). Retire it instead.")


class TouchpointInvalid(ValidationFailed):
    code = "touchpoint_invalid"
    message = N_("This touchpoint cannot be saved: {reason}")


class RatingOutOfRange(ValidationFailed):
    code = "rating_out_of_range"
    message = N_("A rating is a whole number from 1 to 5.")


class NpsOutOfRange(ValidationFailed):
    code = "nps_out_of_range"
    message = N_("A recommendation score is a whole number from 0 to 10.")


class CommentTooLong(ValidationFailed):
    code = "comment_too_long"
    message = N_("A comment has at most {limit} characters.")


class ReceiptRefused(OmniloopError):
    code = "receipt_invalid"
    status = 400
    message = N_("This receipt code is not valid: it was altered, is incomplete or belongs "
                 "to another brand.")


class ReceiptExpired(OmniloopError):
    code = "receipt_expired"
    status = 400
    message = N_("This receipt code is too old to leave feedback with.")


class FeedbackAlreadyGiven(Conflict):
    code = "feedback_already_given"
    message = N_("Feedback for this visit has already been received. Thank you!")


class OrderNotFoundForReceipt(NotFound):
    code = "order_not_found"
    message = N_("Order not found.")


class TaskNotFound(NotFound):
    code = "recovery_task_not_found"
    message = N_("Service-recovery task not found.")


class MakeGoodUnavailable(Conflict):
    code = "make_good_unavailable"
    message = N_("No make-good coupon can be offered: {reason}")


class ReferralCodeNotFound(NotFound):
    code = "referral_code_not_found"
    message = N_("This referral link is not valid.")


class ReferralsOff(Conflict):
    code = "referrals_off"
    message = N_("The brand is not running a referral offer at the moment.")


class SelfReferral(Conflict):
    code = "self_referral"
    message = N_("You cannot use your own referral link ({reason}).")


class NotNewCustomer(Conflict):
    code = "referral_not_new_customer"
    message = N_("Referral offers are for people new to the brand, and this number has "
                 "shopped with us before.")


class AlreadyReferred(Conflict):
    code = "already_referred"
    message = N_("This number was already invited by another member.")


class ReferralCapReached(Conflict):
    code = "referral_cap_reached"
    message = N_("This member has invited as many friends as the offer allows this month "
                 "({cap}). Please try again next month.")


class ShortLinkNotFound(NotFound):
    code = "short_link_not_found"
    message = N_("Short link not found.")


class UrlInvalid(ValidationFailed):
    code = "url_invalid"
    message = N_("Enter a full web address starting with https:// or http://.")


class ProgramInvalid(ValidationFailed):
    code = "loop_program_invalid"
    message = N_("These settings cannot be saved: {reason}")


class NoReceiptTouchpoint(Conflict):
    code = "no_receipt_touchpoint"
    message = N_("This store has no receipt touchpoint in use: create one (placement: "
                 "receipt, purpose: feedback) in the admin first.")
