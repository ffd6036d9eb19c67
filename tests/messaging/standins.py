"""Local stand-ins for the services messages go to: real servers on loopback.

* `LineStandIn`: the LINE Messaging API's push, multicast and reply endpoints, checking
  what LINE checks (bearer token, message JSON, at most 500 recipients, at most 5 messages,
  the retry key's format and re-use: 409 for a key already accepted). It can be told to
  answer 429/500, and to hold requests (for killing a worker mid-request).
* `SmsStandIn`: an HTTP SMS provider with bearer token and Idempotency-Key dedup.
* `WebhookReceiver`: an integrator's endpoint verifying Standard Webhooks signatures.
* `SmtpStandIn`: aiosmtpd on loopback, counting mails by Message-ID.

Each counts what it *delivered*: duplicates recognised by their key are not delivered twice,
as the real services would not, so tests check delivery counts on the receiver's side.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import re
import socket
import threading
import uuid
from collections import Counter
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller

_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
_MESSAGE_TYPES = {"text", "flex", "image", "sticker", "template", "video", "audio",
                  "location", "imagemap"}


class _Server:
    """A ThreadingHTTPServer on a free loopback port, run in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _answer(self, status: int, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))


def check_line_message(message: Any) -> str | None:
    """What LINE would say is wrong with one message object, or None."""
    if not isinstance(message, dict) or message.get("type") not in _MESSAGE_TYPES:
        return "message type"
    if message["type"] == "text":
        text = message.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= 5000:
            return "text must be 1-5000 characters"
    if message["type"] == "flex":
        alt = message.get("altText")
        contents = message.get("contents")
        if not isinstance(alt, str) or not 1 <= len(alt) <= 1500:
            return "altText"
        if not isinstance(contents, dict) or contents.get("type") not in ("bubble", "carousel"):
            return "flex contents"
    return None


class LineStandIn(_Server):
    def __init__(self, token: str = "line-token") -> None:
        super().__init__(_LineHandler)
        self.token = token
        self.lock = threading.Lock()
        self.fail_next: list[int] = []      # statuses to answer, one per request, first first
        self.always: int | None = None      # answer this status to every request
        self.hold = threading.Event()       # set: requests wait for `release` after recording
        self.release = threading.Event()
        self.received = threading.Semaphore(0)
        self.accepted_keys: dict[str, list[str]] = {}
        self.requests: list[dict[str, Any]] = []   # every request that reached us
        self.deliveries: Counter[str] = Counter()  # user id -> messages delivered
        self.delivered_messages: list[tuple[str, list[dict[str, Any]]]] = []

    def delivered_to(self) -> set[str]:
        return set(self.deliveries)


class _LineHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802
        """`/_stats`: what was received and delivered (for the benchmark, in another process)."""
        standin: LineStandIn = self.server.standin  # type: ignore[attr-defined]
        if self.path != "/_stats":
            self._answer(404, {"message": "Not found"})
            return
        with standin.lock:
            counts = list(standin.deliveries.values())
            self._answer(200, {"requests": len(standin.requests),
                               "recipients": len(counts), "deliveries": sum(counts),
                               "max_per_recipient": max(counts, default=0),
                               "max_batch": max((len(r["body"].get("to", [])) if isinstance(
                                   r["body"].get("to"), list) else 1
                                   for r in standin.requests), default=0)})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        standin: LineStandIn = self.server.standin  # type: ignore[attr-defined]
        raw = self._body()
        if self.headers.get("Authorization") != f"Bearer {standin.token}":
            self._answer(401, {"message": "Authentication failed"})
            return
        kind = {"/v2/bot/message/push": "push", "/v2/bot/message/multicast": "multicast",
                "/v2/bot/message/reply": "reply"}.get(self.path)
        if kind is None:
            self._answer(404, {"message": "Not found"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(400, {"message": "The request body has 1 error(s)"})
            return
        retry_key = self.headers.get("X-Line-Retry-Key")
        with standin.lock:
            standin.requests.append({"kind": kind, "body": body, "retry_key": retry_key})
            forced = standin.fail_next.pop(0) if standin.fail_next else standin.always
        standin.received.release()
        if standin.hold.is_set():
            standin.release.wait(30)
        if forced is not None:
            self._answer(forced, {"message": "forced"},
                         {"Retry-After": "1"} if forced == 429 else None)
            return
        problem = self._check(kind, body, retry_key)
        if problem is not None:
            self._answer(400, {"message": "The request body has 1 error(s)",
                               "details": [{"message": problem}]})
            return
        to = [body["to"]] if kind == "push" else list(body.get("to", []))
        if kind == "reply":
            to = [f"reply:{body['replyToken']}"]
        with standin.lock:
            if retry_key is not None and retry_key in standin.accepted_keys:
                self._answer(409, {"message": "The retry key is already accepted"},
                             {"x-line-accepted-request-id": retry_key})
                return
            if retry_key is not None:
                standin.accepted_keys[retry_key] = to
            for user in to:
                standin.deliveries[user] += 1
                standin.delivered_messages.append((user, body["messages"]))
        self._answer(200, {"sentMessages": [{"id": str(uuid.uuid4().int)[:18]}
                                             for _ in body["messages"]]})

    @staticmethod
    def _check(kind: str, body: Any, retry_key: str | None) -> str | None:
        if not isinstance(body, dict):
            return "body"
        messages = body.get("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
            return "messages: size must be between 1 and 5"
        for message in messages:
            problem = check_line_message(message)
            if problem:
                return problem
        if retry_key is not None:
            try:
                uuid.UUID(retry_key)
            except ValueError:
                return "X-Line-Retry-Key must be a UUID"
        if kind == "push":
            if not isinstance(body.get("to"), str) or not _USER_ID.match(body["to"]):
                return "to"
        elif kind == "multicast":
            to = body.get("to")
            if not isinstance(to, list) or not 1 <= len(to) <= 500:
                return "to: size must be between 1 and 500"
            if not all(isinstance(u, str) and _USER_ID.match(u) for u in to):
                return "to: invalid user id"
        elif kind == "reply" and not isinstance(body.get("replyToken"), str):
            return "replyToken"
        return None


class SmsStandIn(_Server):
    def __init__(self, token: str = "sms-token") -> None:
        super().__init__(_SmsHandler)
        self.token = token
        self.lock = threading.Lock()
        self.fail_next: list[int] = []
        self.keys: set[str] = set()
        self.delivered: list[dict[str, Any]] = []


class _SmsHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802
        standin: SmsStandIn = self.server.standin  # type: ignore[attr-defined]
        body = json.loads(self._body() or b"{}")
        if self.headers.get("Authorization") != f"Bearer {standin.token}":
            self._answer(401, {"error": "unauthorized"})
            return
        with standin.lock:
            if standin.fail_next:
                self._answer(standin.fail_next.pop(0), {"error": "forced"})
                return
            key = self.headers.get("Idempotency-Key") or ""
            if not key or not isinstance(body.get("to"), str) or not body.get("text"):
                self._answer(422, {"error": "to, text and Idempotency-Key are required"})
                return
            if key in standin.keys:
                self._answer(200, {"status": "duplicate"})
                return
            standin.keys.add(key)
            standin.delivered.append(body)
        self._answer(202, {"status": "queued"})


class WebhookReceiver(_Server):
    """Verifies webhook-signature with the secret; counts deliveries per webhook-id."""

    def __init__(self, secret: str = "") -> None:
        super().__init__(_WebhookHandler)
        self.secret = secret
        self.lock = threading.Lock()
        self.fail_next: list[int] = []
        self.bad_signatures = 0
        self.deliveries: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.headers_seen: list[dict[str, str]] = []


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part.split(",", 1) == ["v1", expected]
               for part in headers.get("webhook-signature", "").split(" "))


class _WebhookHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802
        receiver: WebhookReceiver = self.server.standin  # type: ignore[attr-defined]
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with receiver.lock:
            receiver.headers_seen.append(headers)
            if receiver.fail_next:
                self._answer(receiver.fail_next.pop(0), {})
                return
            if not verify_standard_webhook(receiver.secret, headers, body):
                receiver.bad_signatures += 1
                self._answer(400, {"error": "bad signature"})
                return
            webhook_id = headers["webhook-id"]
            if webhook_id not in receiver.deliveries:
                receiver.bodies[webhook_id] = json.loads(body)
            receiver.deliveries[webhook_id] += 1
        self._answer(204)


class _SmtpHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_message_id: dict[str, EmailMessage] = {}
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received += 1
            self.by_message_id.setdefault(str(message["Message-ID"]), message)
        return "250 Message accepted for delivery"


class SmtpStandIn:
    def __init__(self) -> None:
        self.handler = _SmtpHandler()
        with socket.socket() as probe:  # aiosmtpd checks readiness on the port it is given
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port)

    def __enter__(self) -> SmtpStandIn:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def mails(self) -> list[EmailMessage]:
        return list(self.handler.by_message_id.values())
