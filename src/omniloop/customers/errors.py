"""Errors of the customers module."""

from __future__ import annotations

from omniloop.core.errors import N_, BadRequest, Conflict, NotFound, ValidationFailed


class InvalidIdentity(ValidationFailed):
    code = "invalid_identity"
    message = N_("'{value}' is not a valid {kind} identity.")


class NoIdentity(BadRequest):
    code = "identity_required"
    message = N_("Give at least one identity (phone, e-mail, LINE id, card, ...).")


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    message = N_("Customer not found.")


class MergeNotFound(NotFound):
    code = "merge_not_found"
    message = N_("Merge not found.")


class MergeAlreadyUndone(Conflict):
    code = "merge_already_undone"
    message = N_("This merge has already been undone.")


class MergeHasLaterMerges(Conflict):
    code = "merge_has_later_merges"
    message = N_("Undo the later merges of this profile first.")


class CustomerErased(Conflict):
    code = "customer_erased"
    message = N_("This customer's personal data has been erased.")
