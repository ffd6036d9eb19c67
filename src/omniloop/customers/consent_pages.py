"""The consumer's unsubscribe page, `/u/<token>`, reached from a link in an e-mail or SMS.

GET shows what the link will do and a button; it never changes anything, because mail
scanners and link previews open links on their own. POST opts out. It needs no CSRF token
and no cookie: the signed token is the proof, and RFC 8058 one-click unsubscribe (a mail
client POSTing `List-Unsubscribe=One-Click` to the link without cookies) must work as is. The
page's own button posts the same. Repeating it changes nothing. A malformed, forged or altered
token, or one whose customer does not exist, gets a 404 page that names nobody.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from omniloop.api.deps import SessionDep
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.i18n import gettext
from omniloop.customers import consent
from omniloop.customers.errors import CustomerNotFound
from omniloop.customers.models import Channel, ConsentStatus, Customer
from omniloop.customers.profiles import get_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.errors import TenantNotFound
from omniloop.tenancy.tenants import get_tenant
from omniloop.web.templating import render

router = APIRouter(include_in_schema=False)

# The brand's name is the page's subtitle, so the sentences need not repeat it (and a long
# name cannot break the sentence across lines on a phone).
QUESTIONS: dict[Channel, str] = {
    Channel.email: N_("Stop receiving marketing e-mails?"),
    Channel.sms: N_("Stop receiving marketing text messages?"),
    Channel.line: N_("Stop receiving marketing LINE messages?"),
}
DONE: dict[Channel, str] = {
    Channel.email: N_("You will no longer receive marketing e-mails."),
    Channel.sms: N_("You will no longer receive marketing text messages."),
    Channel.line: N_("You will no longer receive marketing LINE messages."),
}
# The token is the only secret of this page: keep it out of Referer headers and search
# engines.
_HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}


def _page(request: Request, token: str, state: str, brand: str = "",
          channel: Channel | None = None, status_code: int = 200) -> HTMLResponse:
    text = ""
    if channel is not None:
        text = gettext((DONE if state in ("done", "already") else QUESTIONS)[channel])
    response = render(request, "consumer/unsubscribe.html",
                      {"state": state, "brand": brand, "text": text, "token": token},
                      status_code=status_code)
    response.headers.update(_HEADERS)
    return response


def _invalid(request: Request) -> HTMLResponse:
    return _page(request, "", "invalid", status_code=404)


def _find(session: Session, token: str) -> tuple[consent.UnsubscribeTarget, Customer,
                                                  str] | None:
    target = consent.read_unsubscribe_token(token)
    if target is None:
        return None
    try:
        brand = get_tenant(session, target.tenant_id).name
        customer = get_customer(session, system_actor(target.tenant_id), target.customer_id)
    except (TenantNotFound, CustomerNotFound):
        return None
    return target, customer, brand


@router.get("/u/{token}")
def unsubscribe_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    found = _find(session, token)
    if found is None:
        return _invalid(request)
    target, customer, brand = found
    current = consent.consents_of(session, target.tenant_id, customer.id).get(target.channel)
    opted_out = customer.erased_at is not None or (
        current is not None and current.status is ConsentStatus.opted_out)
    return _page(request, token, "already" if opted_out else "confirm", brand, target.channel)


@router.post("/u/{token}")
def unsubscribe(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    found = _find(session, token)
    if found is None:
        return _invalid(request)
    target, _customer, brand = found
    consent.unsubscribe(session, target)
    return _page(request, token, "done", brand, target.channel)
