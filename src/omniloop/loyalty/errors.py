"""Errors of the loyalty module."""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, NotFound, ValidationFailed


class PointsInvalid(ValidationFailed):
    code = "points_invalid"
    message = N_("Points must be a whole number above zero.")


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    message = N_("Not enough points: the balance is {balance}, {points} were asked for.")


class BelowMinimumRedemption(Conflict):
    code = "below_minimum_redemption"
    message = N_("At least {minimum} points must be redeemed at a time.")


class RedeemShareExceeded(Conflict):
    code = "redeem_share_exceeded"
    message = N_("Points can pay at most {share}% of an order: up to {points} points here.")


class ReasonRequired(ValidationFailed):
    code = "reason_required"
    message = N_("Give a reason: adjustments are audited.")


class NoShowInFuture(ValidationFailed):
    code = "no_show_in_future"
    message = N_("A booking or pickup can be marked as a no-show only once its time has passed.")


class NoShowTaken(Conflict):
    code = "no_show_taken"
    message = N_("Booking or pickup {reference} is already marked as another customer's no-show.")


class NoShowNotFound(NotFound):
    code = "no_show_not_found"
    message = N_("No such no-show.")


class BlacklistEndInvalid(ValidationFailed):
    code = "blacklist_end_invalid"
    message = N_("The blacklist needs an end date in the future, within five years.")


class BlacklistNotFound(NotFound):
    code = "blacklist_not_found"
    message = N_("No such blacklist entry.")


class ProgramInvalid(ValidationFailed):
    code = "program_invalid"


class TierCodesRepeat(ProgramInvalid):
    message = N_("Two tiers have the same code.")


class TiersNeedBase(ProgramInvalid):
    message = N_("The first tier must start at 0, so that every member has a tier.")


class TierThresholdsRepeat(ProgramInvalid):
    message = N_("Two tiers have the same threshold.")


class PosCardTaken(Conflict):
    code = "pos_card_taken"
    message = N_("This card number belongs to another customer already.")
