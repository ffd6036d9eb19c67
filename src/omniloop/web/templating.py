"""Rendering pages: one Jinja environment with gettext, money and local-time filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_datetime as babel_format_datetime
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from omniloop import __version__
from omniloop.core import i18n
from omniloop.core.clock import to_local
from omniloop.core.money import format_money
from omniloop.tenancy.access import ROLE_LABELS, SCOPE_LABELS
from omniloop.tenancy.models import ApiScope, Role
from omniloop.web import TEMPLATES_DIR

env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html", "xml"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
env.install_gettext_callables(  # type: ignore[attr-defined]
    gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
)


def static_url(path: str) -> str:
    return f"/static/{path}?v={__version__}"


def money(minor: int, currency: str) -> str:
    return format_money(minor, currency, i18n.current_locale.get())


def local_time(value: datetime | None, timezone: str, fmt: str = "short") -> str:
    if value is None:
        return "—"
    locale = i18n.current_locale.get()
    return str(babel_format_datetime(to_local(value, timezone), format=fmt,
                                     locale="zh_Hant_TW" if locale == "zh_TW" else "en"))


def lang_url(request: Request, locale: str) -> str:
    """The current page in another language (without a one-time flash such as `done`)."""
    params = {k: v for k, v in request.query_params.items() if k != "done"}
    params["lang"] = locale
    return f"{request.url.path}?{urlencode(params)}"


def role_label(role: Role | str) -> str:
    return i18n.gettext(ROLE_LABELS[Role(role)])


def scope_label(scope: ApiScope | str) -> str:
    return i18n.gettext(SCOPE_LABELS[ApiScope(scope)])


env.globals.update(static_url=static_url, lang_url=lang_url, role_label=role_label,
                   scope_label=scope_label)
env.filters.update(money=money, local_time=local_time)


def render(request: Request, template: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> HTMLResponse:
    locale = i18n.current_locale.get()
    values: dict[str, Any] = {"request": request, "locale": locale,
                              "html_lang": i18n.html_lang(locale)}
    values.update(context or {})
    html = env.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code,
                        headers={"Cache-Control": "no-store", "Content-Language":
                                 i18n.html_lang(locale)})
