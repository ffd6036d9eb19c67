"""Staff sessions in the admin: a signed cookie, CSRF tokens on forms, the page context.

The cookie (Starlette's SessionMiddleware, signed with the secret key, idle expiry) holds the
staff id and a session epoch; raising the epoch on logout or a password change ends every
copy of the cookie, which a stateless signed cookie could not otherwise do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from omniloop.api.deps import SessionDep, client_ip
from omniloop.core.errors import N_, CsrfFailed, OmniloopError
from omniloop.core.security import constant_time_equals, random_token
from omniloop.tenancy.access import Actor
from omniloop.tenancy.models import StaffUser, Tenant
from omniloop.tenancy.staff import actor_for
from omniloop.tenancy.tenants import get_tenant
from omniloop.web.nav import NavItem, items_for

SESSION_KEY = "staff"


class LoginRequired(OmniloopError):
    """Rendered as a redirect to the login page (see `omniloop.web.errors`)."""

    code = "login_required"
    status = 401
    message = N_("Please sign in.")


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = random_token(24)
        request.session["csrf"] = token
    return token


async def require_csrf(request: Request) -> None:
    """Checks the form's `csrf_token` against the session's. Use on every POST page route."""
    expected = request.session.get("csrf")
    form = await request.form()
    sent = form.get("csrf_token")
    if not isinstance(expected, str) or not isinstance(sent, str) or not constant_time_equals(
            expected, sent):
        raise CsrfFailed()


CsrfChecked = Depends(require_csrf)


def sign_in(request: Request, staff: StaffUser) -> None:
    request.session.clear()
    request.session[SESSION_KEY] = {"t": staff.tenant_id, "s": staff.id, "e": staff.session_epoch}
    request.session["csrf"] = random_token(24)


def sign_out(request: Request) -> None:
    request.session.clear()


@dataclass
class AdminContext:
    """What every admin page knows: who is signed in, for which brand, and the nav."""

    request: Request
    actor: Actor
    staff: StaffUser
    tenant: Tenant
    nav: list[NavItem]
    csrf: str
    extra: dict[str, Any] = field(default_factory=dict)

    def template_values(self, active: str, **values: Any) -> dict[str, Any]:
        return {"actor": self.actor, "staff": self.staff, "tenant": self.tenant,
                "nav": self.nav, "active_nav": active, "csrf_token": self.csrf, **values}


def get_admin(request: Request, session: SessionDep) -> AdminContext:
    data = request.session.get(SESSION_KEY)
    if not isinstance(data, dict):
        raise LoginRequired()
    staff = session.get(StaffUser, (data.get("t"), data.get("s")))
    if staff is None or not staff.active or staff.session_epoch != data.get("e"):
        request.session.pop(SESSION_KEY, None)
        raise LoginRequired()
    actor = actor_for(session, staff, client_ip(request))
    tenant = get_tenant(session, staff.tenant_id)
    return AdminContext(request=request, actor=actor, staff=staff, tenant=tenant,
                        nav=items_for(actor), csrf=csrf_token(request))


Admin = Annotated[AdminContext, Depends(get_admin)]
