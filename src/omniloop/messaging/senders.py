"""The channels' wire: LINE (line-bot-sdk), SMTP, an HTTP SMS provider, signed webhooks.

Every sender takes one unit of work (one request's worth of outbox rows and the key that
identifies that request) and answers an `Outcome`: sent, retry later (the receiver was busy
or broken: 429, 5xx, a network error) or dead (the receiver refused it for good: a 4xx).
Senders never touch the database; dispatch.py records what they answer.

The key the receiver sees is derived from the outbox, never drawn at random per attempt, so
a re-send after a crash is recognised on the other side:
* LINE: `X-Line-Retry-Key`, a UUID derived from the multicast batch (or message) id; LINE
  answers 409 to a key it already accepted, which counts as sent.
* e-mail: `Message-ID: <message id@omniloop>`.
* SMS: an `Idempotency-Key` header with the message id.
* webhooks: `webhook-id` (Standard Webhooks), the message id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import httpx

RETRY_NAMESPACE = uuid.UUID("5f1d7c1e-8d7e-4a53-9a55-0b6c7f3f2a10")


@dataclass(frozen=True)
class Outcome:
    kind: Literal["sent", "retry", "dead"]
    error: str | None = None
    retry_after: float | None = None


SENT = Outcome("sent")


@dataclass(frozen=True)
class Recipient:
    message_id: str
    address: str
    customer_id: str | None
    attempts: int


def retry_key(unit_id: str) -> str:
    """The UUID LINE wants as X-Line-Retry-Key, the same for every try of one request."""
    return str(uuid.uuid5(RETRY_NAMESPACE, unit_id))


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    value = None
    for name, item in (headers.items() if hasattr(headers, "items") else headers):
        if str(name).lower() == "retry-after":
            value = item
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _http_outcome(status: int, text: str, headers: Any = None) -> Outcome:
    if 200 <= status < 300:
        return SENT
    error = f"HTTP {status}: {text[:300]}"
    if status in (408, 425, 429) or status >= 500:
        return Outcome("retry", error, _retry_after(headers))
    return Outcome("dead", error)


# --- LINE ---------------------------------------------------------------------------------

MAX_MULTICAST = 500        # recipients per multicast request (LINE's limit)
MAX_MESSAGES = 5           # message objects per request (LINE's limit)


class LineSender:
    """Push (one recipient), multicast (up to 500) and reply, through the official SDK.

    The SDK's generated client is thread-safe per instance (urllib3 pool); one per brand.
    """

    def __init__(self, access_token: str, base_url: str) -> None:
        from linebot.v3.messaging import ApiClient, Configuration, MessagingApi

        configuration = Configuration(host=base_url.rstrip("/"), access_token=access_token)
        configuration.retries = 0  # retries are ours: with the same retry key, later
        self._client = ApiClient(configuration)
        self._api = MessagingApi(self._client)

    def close(self) -> None:
        self._client.close()

    def send(self, unit_id: str, recipients: list[Recipient],
             payload: dict[str, Any]) -> Outcome:
        from linebot.v3.messaging import (
            Message,
            MulticastRequest,
            PushMessageRequest,
            ReplyMessageRequest,
        )
        from linebot.v3.messaging.exceptions import ApiException

        try:
            messages = [Message.from_dict(m) for m in payload["messages"]]
        except (KeyError, TypeError, ValueError) as exc:
            return Outcome("dead", f"invalid LINE message: {exc}"[:300])
        if not 1 <= len(messages) <= MAX_MESSAGES or not 1 <= len(recipients) <= MAX_MULTICAST:
            return Outcome("dead", "too many messages or recipients for one LINE request")
        try:
            reply_token = payload.get("reply_token")
            if reply_token and len(recipients) == 1 and recipients[0].attempts == 1:
                # A reply is free and needs no retry key, but its token works once and for
                # a minute: only the first try uses it; later tries push (with the key).
                try:
                    self._api.reply_message_with_http_info(ReplyMessageRequest(
                        reply_token=reply_token, messages=messages))
                    return SENT
                except ApiException as exc:
                    if exc.status != 400:
                        raise
            key = retry_key(unit_id)
            if len(recipients) == 1:
                self._api.push_message_with_http_info(PushMessageRequest(
                    to=recipients[0].address, messages=messages), x_line_retry_key=key)
            else:
                self._api.multicast_with_http_info(MulticastRequest(
                    to=[r.address for r in recipients], messages=messages),
                    x_line_retry_key=key)
            return SENT
        except ApiException as exc:
            if exc.status == 409:  # this retry key was accepted before: already sent
                return SENT
            body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else ""
            return _http_outcome(int(exc.status or 0), body or str(exc.reason), exc.headers)
        except Exception as exc:  # noqa: BLE001 - urllib3 network errors: try again later
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])


# --- e-mail -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    from_address: str
    username: str = ""
    password: str = ""
    security: Literal["none", "starttls", "tls"] = "starttls"
    timeout: float = 20.0


def build_email(config: SmtpConfig, message_id: str, to: str, payload: dict[str, Any],
                headers: dict[str, str]) -> EmailMessage:
    # Lines up to RFC 5322's 998 characters: a List-Unsubscribe URL is one long word that a
    # 78-character policy would turn into an encoded-word, which mail clients cannot follow.
    email = EmailMessage(policy=SMTP_POLICY.clone(max_line_length=998))
    email["From"] = config.from_address
    email["To"] = to
    email["Subject"] = str(payload.get("subject", ""))
    email["Date"] = formatdate(localtime=False)
    domain = config.from_address.rsplit("@", 1)[-1].strip("> ") or "omniloop.local"
    # The outbox id, not a fresh one per try: a receiver can see a re-send is the same mail.
    email["Message-ID"] = f"<{message_id}@{domain}>" if message_id else make_msgid()
    for name, value in headers.items():
        email[name] = value
    email.set_content(str(payload.get("text", "")))
    if payload.get("html"):
        email.add_alternative(str(payload["html"]), subtype="html")
    return email


class EmailSender:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, message_id: str, to: str, payload: dict[str, Any],
             headers: dict[str, str]) -> Outcome:
        config = self.config
        email = build_email(config, message_id, to, payload, headers)
        try:
            smtp: smtplib.SMTP
            if config.security == "tls":
                smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if config.username:
                    smtp.login(config.username, config.password)
                smtp.send_message(email)
            return SENT
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind: Literal["retry", "dead"] = "retry" if all(400 <= c < 500 for c in codes) \
                else "dead"
            return Outcome(kind, f"recipient refused: {exc.recipients}"[:300])
        except smtplib.SMTPResponseException as exc:
            kind = "retry" if 400 <= exc.smtp_code < 500 else "dead"
            return Outcome(kind, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300])
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])


# --- SMS ----------------------------------------------------------------------------------


class SmsSender:
    """POST {"to": E.164, "text": ..., "reference": id} to the provider's URL with a bearer
    token and an Idempotency-Key; any 2xx (or 409: already had it) is sent."""

    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._client.close()

    def send(self, message_id: str, to: str, payload: dict[str, Any]) -> Outcome:
        try:
            response = self._client.post(self.url, json={
                "to": to, "text": payload.get("text", ""), "reference": message_id},
                headers={"Idempotency-Key": message_id})
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])
        if response.status_code == 409:
            return SENT
        return _http_outcome(response.status_code, response.text, response.headers)


# --- outgoing webhooks (Standard Webhooks) ---------------------------------------------------


def new_webhook_secret() -> str:
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign_webhook(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookSender:
    def __init__(self, timeout: float = 15.0) -> None:
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def send(self, message_id: str, url: str, secret: str, payload: dict[str, Any],
             now: float | None = None) -> Outcome:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        timestamp = int(now if now is not None else time.time())
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign_webhook(secret, message_id, timestamp, body)}
        try:
            response = self._client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return SENT
        # Standard Webhooks: any other answer is a failure to retry, except 410 (gone).
        error = f"HTTP {response.status_code}: {response.text[:300]}"
        if response.status_code == 410:
            return Outcome("dead", error)
        return Outcome("retry", error, _retry_after(response.headers))
