"""Errors of the analytics module: bad input to a report, a model or a CSV of transactions."""

from __future__ import annotations

from omniloop.core.errors import N_, NotFound, ValidationFailed


class TransactionsInvalid(ValidationFailed):
    """A CSV of transactions for `omniloop analytics clv` that cannot be read as one."""

    code = "transactions_invalid"
    message = N_("The transactions file cannot be read: {reason}")


class DateRangeInvalid(ValidationFailed):
    code = "date_range_invalid"
    message = N_("Choose a start date on or before the end date, at most {days} days apart.")


class DateInvalid(ValidationFailed):
    code = "date_invalid"
    message = N_("Enter a date like 2026-11-01, up to today.")


class ClvUnavailable(ValidationFailed):
    code = "clv_unavailable"
    message = N_("Customer lifetime value cannot be estimated yet: it needs customers who "
                 "bought more than once before the chosen date.")


class SnapshotNotFound(NotFound):
    code = "rfm_snapshot_not_found"
    message = N_("RFM snapshot not found.")


class SegmentNotFound(NotFound):
    code = "segment_not_found"
    message = N_("Segment not found.")


class SegmentInvalid(ValidationFailed):
    code = "segment_invalid"
    message = N_("Name the segment and choose at least one RFM group.")
