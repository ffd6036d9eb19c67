"""ASGI middleware that must wrap every request: the request's language.

A plain ASGI middleware (not BaseHTTPMiddleware) so the context variable it sets is visible
to the endpoint, its dependencies and the exception handlers.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniloop.core.i18n import LANGUAGE_COOKIE, current_locale, negotiate, normalize_locale


class LocaleMiddleware:
    """Chooses the language: `?lang=` (remembered in a cookie), the cookie, Accept-Language.

    API clients get Accept-Language; people in a browser get what they last picked.
    """

    def __init__(self, app: ASGIApp, default_locale: str) -> None:
        self.app = app
        self.default_locale = default_locale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        chosen = normalize_locale(query.get("lang", [""])[0])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookie_locale = None
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:  # a malformed Cookie header must not break the request
                jar = SimpleCookie()
            if LANGUAGE_COOKIE in jar:
                cookie_locale = normalize_locale(jar[LANGUAGE_COOKIE].value)
        locale = (chosen or cookie_locale or negotiate(headers.get("accept-language"))
                  or self.default_locale)
        scope.setdefault("state", {})["locale"] = locale
        token = current_locale.set(locale)

        async def send_with_cookie(message: Message) -> None:
            if chosen and message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.append(
                    "set-cookie",
                    f"{LANGUAGE_COOKIE}={chosen}; Path=/; Max-Age=31536000; SameSite=Lax",
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            current_locale.reset(token)
