"""`/m/o/<token>.gif` and `/m/c/<token>`: the e-mail tracking pixel and links (`tracking`).

GET requests that write: each opens its own short write transaction instead of the request's
read one, as a mail client or a browser following a link only ever sends a GET.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from omniloop.core.db import get_database
from omniloop.core.i18n import gettext
from omniloop.core.threads import in_thread
from omniloop.messaging import tracking
from omniloop.web.templating import render

router = APIRouter(include_in_schema=False)

_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex"}


@router.get("/m/o/{token}.gif")
async def opened(token: str) -> Response:
    """Always the image, whatever the token: a mail client shows nothing either way."""
    tracked = tracking.read_token(token)
    if tracked is not None and tracked.link is None:
        def work() -> None:
            with get_database().unit_of_work() as session:
                tracking.record_open(session, tracked)

        await in_thread(work)
    return Response(tracking.PIXEL, media_type="image/gif", headers=_PRIVATE)


@router.get("/m/c/{token}")
async def clicked(token: str, request: Request) -> Response:
    tracked = tracking.read_token(token)
    url = None
    if tracked is not None and tracked.link is not None:
        def work() -> str | None:
            with get_database().unit_of_work() as session:
                return tracking.record_click(session, tracked)

        url = await in_thread(work)
    if url is None:
        page = render(request, "consumer/message.html", {
            "brand": "", "heading": gettext("This link is not in use"),
            "message": gettext("The link you opened is not (or no longer) in use. The "
                               "message it came from may have been removed.")},
            status_code=404)
        page.headers.update(_PRIVATE)
        return page
    return RedirectResponse(url, status_code=302, headers=_PRIVATE)
