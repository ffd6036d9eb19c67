"""Errors of the loyalty module."""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, ValidationFailed


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
