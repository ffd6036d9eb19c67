"""Errors on pages: a readable page in the visitor's language, or the login redirect."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from omniloop.core.errors import OmniloopError
from omniloop.web.auth import LoginRequired
from omniloop.web.templating import render


def render_page_error(request: Request, error: OmniloopError) -> Response | None:
    if isinstance(error, LoginRequired):
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(f"/admin/login?next={quote(target)}", status_code=303)
    return render(request, "error.html",
                  {"status": error.status, "code": error.code, "message": error.localized()},
                  status_code=error.status)
