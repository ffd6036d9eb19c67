"""Errors of the tenancy module."""

from __future__ import annotations

from omniloop.core.errors import N_, BadRequest, Conflict, NotFound, OmniloopError


class TenantNotFound(NotFound):
    code = "tenant_not_found"
    message = N_("No brand with that code.")


class TenantSlugTaken(Conflict):
    code = "tenant_slug_taken"
    message = N_("A brand with the code '{slug}' already exists.")


class InvalidTenantSetting(BadRequest):
    code = "invalid_tenant_setting"


class StoreNotFound(NotFound):
    code = "store_not_found"
    message = N_("Store not found.")


class StoreCodeTaken(Conflict):
    code = "store_code_taken"
    message = N_("Another store already uses the code '{code}'.")


class StaffNotFound(NotFound):
    code = "staff_not_found"
    message = N_("Staff member not found.")


class StaffEmailTaken(Conflict):
    code = "staff_email_taken"
    message = N_("A staff member with the e-mail '{email}' already exists.")


class StoresRequired(BadRequest):
    code = "stores_required"
    message = N_("Store managers and cashiers must be assigned to at least one store.")


class CannotRemoveLastOwner(Conflict):
    code = "last_owner"
    message = N_("The brand must keep at least one active owner.")


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    message = N_("API key not found.")


class InvalidCredentials(OmniloopError):
    code = "invalid_credentials"
    status = 401
    message = N_("The e-mail or password is not correct.")


class AccountLocked(OmniloopError):
    code = "account_locked"
    status = 423
    message = N_("Too many failed sign-in attempts. Try again in {minutes} minutes.")


class SessionExpired(OmniloopError):
    code = "session_expired"
    status = 401
    message = N_("Your session has ended. Please sign in again.")
