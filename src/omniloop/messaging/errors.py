"""Errors of the messaging module: stable codes, English msgids translated at render time."""

from __future__ import annotations

from omniloop.core.errors import N_, BadRequest, Conflict, NotFound, OmniloopError, ValidationFailed


class CredentialsUnreadable(Conflict):
    code = "channel_credentials_unreadable"
    message = N_("The stored channel credentials cannot be read (was the secret key "
                 "changed?). Enter them again in the channel settings.")


class ChannelNotConfigured(Conflict):
    code = "channel_not_configured"
    message = N_("The {channel} channel is not set up for this brand.")


class ChannelSettingsInvalid(ValidationFailed):
    code = "channel_settings_invalid"
    message = N_("The channel settings are incomplete or invalid: {problem}")


class MessagingSettingsInvalid(ValidationFailed):
    code = "messaging_settings_invalid"
    message = N_("The messaging settings are invalid: {problem}")


class InvalidLineSignature(OmniloopError):
    code = "invalid_signature"
    status = 401
    message = N_("The X-Line-Signature header does not match the request body.")


class InvalidWebhookBody(BadRequest):
    code = "invalid_webhook_body"
    message = N_("The webhook body is not a valid LINE webhook payload.")


class MessageNotFound(NotFound):
    code = "message_not_found"
    message = N_("Message not found.")


class MessageNotReplayable(Conflict):
    code = "message_not_replayable"
    message = N_("Only dead letters can be sent again; this message is {status}.")


class MessageContentInvalid(ValidationFailed):
    code = "message_content_invalid"
    message = N_("The message content is invalid: {problem}")


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    message = N_("Webhook endpoint not found.")


class WebhookEndpointInvalid(ValidationFailed):
    code = "webhook_endpoint_invalid"
    message = N_("The webhook endpoint is invalid: {problem}")


class SendNotFound(NotFound):
    code = "send_not_found"
    message = N_("Send not found.")


class SendNotCancellable(Conflict):
    code = "send_not_cancellable"
    message = N_("Only a scheduled send can be cancelled; this one is {status}.")


class AudienceInvalid(ValidationFailed):
    code = "audience_invalid"
    message = N_("The audience is invalid: {problem}")


class VerificationInvalid(BadRequest):
    code = "verification_code_invalid"
    message = N_("The code is wrong or has expired. Ask for a new one.")


class VerificationRequired(BadRequest):
    code = "phone_verification_required"
    message = N_("Verify the phone number with the code we sent by SMS first.")


class UnknownVariable(MessageContentInvalid):
    """A `{variable}` that sends cannot fill; `field` names the text that holds it."""

    code = "message_content_invalid"
    message = N_("Unknown variable {variable}. The variables are {allowed}.")


class MessageTemplateNotFound(NotFound):
    code = "message_template_not_found"
    message = N_("Message template not found.")


class MessageTemplateInvalid(ValidationFailed):
    """`problem` is an English msgid, translated when shown; `field` names the field."""

    code = "message_template_invalid"
    message = N_("The message template is invalid: {problem}")

    def localized(self) -> str:
        from omniloop.core.i18n import gettext

        return gettext(self.msgid).format(problem=self.problem())

    def problem(self) -> str:
        """The problem alone, in the request's language (shown beside the field)."""
        from omniloop.core.i18n import gettext

        return gettext(str(self.params.get("problem", "")))


class ContentOrTemplate(ValidationFailed):
    code = "content_or_template_required"
    message = N_("Give either the content or a template_id, not both.")
