"""Admin pages of the shell itself: sign-in, sign-out, the dashboard."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from omniloop.api.deps import SessionDep, client_ip
from omniloop.core.errors import N_
from omniloop.core.i18n import LANGUAGE_COOKIE
from omniloop.tenancy import apikeys, staff, stores, tenants
from omniloop.tenancy.access import Permission
from omniloop.tenancy.errors import AccountLocked, InvalidCredentials, TenantNotFound
from omniloop.tenancy.models import StaffUser, Tenant
from omniloop.web.auth import Admin, CsrfChecked, csrf_token, sign_in, sign_out
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

register(NavItem("dashboard", N_("Overview"), "/admin", None, 0))


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so the login form cannot be used as an open redirect."""
    if not target:
        return "/admin"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/admin"
    return target


def _login_page(request: Request, session: SessionDep, *, error: str | None = None,
                email: str = "", brand: str = "", next_path: str = "/admin",
                status_code: int = 200) -> Response:
    all_tenants = tenants.list_tenants(session)
    single = all_tenants[0].slug if len(all_tenants) == 1 else None
    return render(request, "admin/login.html", {
        "csrf_token": csrf_token(request), "error": error, "email": email,
        "brand": brand or single or "", "show_brand": single is None,
        "next": next_path,
    }, status_code=status_code)


@router.get("/login")
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    return _login_page(request, session, next_path=_safe_next(next))


@router.post("/login", dependencies=[CsrfChecked])
def login(request: Request, session: SessionDep,
          email: Annotated[str, Form(max_length=254)] = "",
          password: Annotated[str, Form(max_length=256)] = "",
          brand: Annotated[str, Form(max_length=40)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/admin") -> Response:
    next_path = _safe_next(next)
    try:
        tenant = (tenants.get_tenant_by_slug(session, brand) if brand
                  else _only_tenant(session))
        member: StaffUser = staff.authenticate(session, tenant.id, email, password,
                                               client_ip(request))
    except (InvalidCredentials, AccountLocked, TenantNotFound) as exc:
        # A failed attempt is still committed: the failure count is what locks the account.
        return _login_page(request, session, error=exc.localized(), email=email, brand=brand,
                           next_path=next_path, status_code=exc.status)
    sign_in(request, member)
    response = RedirectResponse(next_path, status_code=303)
    if member.locale:
        response.set_cookie(LANGUAGE_COOKIE, member.locale, max_age=31536000, samesite="lax")
    return response


def _only_tenant(session: SessionDep) -> Tenant:
    all_tenants = tenants.list_tenants(session)
    if len(all_tenants) != 1:
        raise TenantNotFound()
    return all_tenants[0]


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, admin: Admin, session: SessionDep) -> Response:
    staff.end_sessions(session, admin.staff)
    sign_out(request)
    return RedirectResponse("/admin/login", status_code=303)


@router.get("")
def dashboard(admin: Admin, session: SessionDep) -> Response:
    actor = admin.actor
    counts = {"stores": stores.count_stores(session, actor)}
    if actor.can(Permission.staff_read):
        counts["staff"] = len(staff.list_staff(session, actor))
    if actor.can(Permission.apikeys_manage):
        counts["api_keys"] = sum(1 for k in apikeys.list_api_keys(session, actor)
                                 if k.revoked_at is None)
    return render(admin.request, "admin/dashboard.html",
                  admin.template_values("dashboard", counts=counts))
