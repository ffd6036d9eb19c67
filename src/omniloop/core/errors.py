"""Domain errors: a stable machine code, an HTTP status and a human message.

Messages are English msgids translated at render time into the request's language, so the
same error reads correctly in zh-TW and English. Domain modules subclass `OmniloopError`
beside their service; routes never build error strings.
"""

from __future__ import annotations

from typing import Any, ClassVar


def N_(message: str) -> str:
    """Marks a string for extraction into the catalogs without translating it now."""
    return message


class OmniloopError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    message: ClassVar[str] = N_("The request could not be completed.")

    def __init__(self, message: str | None = None, *, field: str | None = None,
                 **params: Any) -> None:
        self.msgid = message or self.message
        self.params = params
        # The request field at fault (e.g. "identities.1.value"), for clients to point at.
        self.field = field
        values = {"field": field, **params} if field else params
        super().__init__(self.msgid.format(**values) if values else self.msgid)

    def localized(self) -> str:
        """The message in the current request's language, placeholders filled in."""
        from omniloop.core.i18n import gettext

        text = gettext(self.msgid)
        values = {"field": self.field, **self.params} if self.field else self.params
        return text.format(**values) if values else text

    def render(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.localized()}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class BadRequest(OmniloopError):
    code = "bad_request"
    status = 400


class InvalidJson(OmniloopError):
    code = "invalid_json"
    status = 400
    message = N_("The request body is not valid JSON.")


class ValidationFailed(OmniloopError):
    code = "validation_error"
    status = 422
    message = N_("Some fields are missing or invalid.")


class UnknownField(OmniloopError):
    code = "unknown_field"
    status = 422
    message = N_("Unknown field: {field}.")


class AuthRequired(OmniloopError):
    code = "auth_required"
    status = 401
    message = N_("Authentication is required: send 'Authorization: Bearer <API key>'.")


class InvalidApiKey(OmniloopError):
    code = "invalid_api_key"
    status = 401
    message = N_("The API key is not valid.")


class ApiKeyRevoked(OmniloopError):
    code = "api_key_revoked"
    status = 401
    message = N_("The API key has been revoked.")


class Forbidden(OmniloopError):
    code = "forbidden"
    status = 403
    message = N_("You do not have permission to do this.")


class ScopeRequired(OmniloopError):
    code = "scope_required"
    status = 403
    message = N_("This API key lacks the '{scope}' scope.")


class CsrfFailed(OmniloopError):
    code = "csrf_failed"
    status = 403
    message = N_("The form expired or did not come from this site. Reload the page and try again.")


class NotFound(OmniloopError):
    code = "not_found"
    status = 404
    message = N_("Not found.")


class Conflict(OmniloopError):
    code = "conflict"
    status = 409
    message = N_("This conflicts with existing data.")


class Unavailable(OmniloopError):
    code = "unavailable"
    status = 503
    message = N_("The service is temporarily unavailable.")
