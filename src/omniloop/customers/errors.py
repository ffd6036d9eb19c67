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


# --- event ingestion ---------------------------------------------------------------------

class BatchSizeInvalid(ValidationFailed):
    code = "event_batch_size"
    message = N_("Send between 1 and {limit} events per batch.")


class EventWhoInvalid(ValidationFailed):
    code = "event_customer_required"
    message = N_("Give exactly one of 'customer_id' and 'identity'.")


class EventTypeInvalid(ValidationFailed):
    code = "event_type_invalid"
    message = N_("'{type}' is not an event type: use lower-case letters, digits and '_', "
                 "2 to 48 characters, starting with a letter.")


class EventChannelRequired(ValidationFailed):
    code = "event_channel_required"
    message = N_("'{type}' is a custom event type: give its channel (online or offline).")


class EventInFuture(ValidationFailed):
    code = "event_in_future"
    message = N_("The event time is more than 5 minutes in the future.")


class EventPropertiesTooLarge(ValidationFailed):
    code = "event_properties_too_large"
    message = N_("Event properties may take at most {limit} bytes of JSON.")


class EventStoreAmbiguous(ValidationFailed):
    code = "event_store_ambiguous"
    message = N_("Give 'store_id' or 'store_code', not both.")


# --- personal data -----------------------------------------------------------------------

class ErasureReasonInvalid(ValidationFailed):
    code = "erasure_reason_invalid"
    message = N_("Give the reason for the erasure, in 1 to {limit} characters.")
