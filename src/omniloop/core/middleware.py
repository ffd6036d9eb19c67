"""ASGI middleware that must wrap every request: the request's language.

A plain ASGI middleware (not BaseHTTPMiddleware) so the context variable it sets is visible
to the endpoint, its dependencies and the exception handlers.
"""

from __future__ import annotations

from functools import lru_cache
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniloop.core.i18n import LANGUAGE_COOKIE, current_locale, negotiate, normalize_locale

MACHINE_PATHS = ("/api/", "/webhooks/")

# Clients send the same few Accept-Language headers again and again; parsing one takes Babel
# tens of microseconds.
_negotiate = lru_cache(maxsize=256)(negotiate)


class LocaleMiddleware:
    """Chooses the language of a request.

    Pages: `?lang=` (remembered in a cookie), then that cookie, then the default (zh-TW): a
    brand's staff see Traditional Chinese until they pick English, whatever the browser says.
    API and webhook paths: `Accept-Language`, then the default, so integrators get messages in
    the language they ask for.
    """

    def __init__(self, app: ASGIApp, default_locale: str) -> None:
        self.app = app
        self.default_locale = default_locale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query_string = scope.get("query_string", b"")
        chosen = (normalize_locale(parse_qs(query_string.decode("latin-1")).get(
            "lang", [""])[0]) if query_string else None)
        # Only the two headers read here (the last of each, as a dict of all would keep).
        accept_language = cookie = None
        for key, value in scope["headers"]:
            name = key.lower()
            if name == b"accept-language":
                accept_language = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        if scope["path"].startswith(MACHINE_PATHS):
            # API callers choose by Accept-Language alone: no cookie to parse.
            locale = _negotiate(accept_language) or self.default_locale
        else:
            cookie_locale = None
            if cookie is not None:
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(cookie)
                except Exception:  # a malformed Cookie header must not break the request
                    jar = SimpleCookie()
                if LANGUAGE_COOKIE in jar:
                    cookie_locale = normalize_locale(jar[LANGUAGE_COOKIE].value)
            locale = chosen or cookie_locale or self.default_locale
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
