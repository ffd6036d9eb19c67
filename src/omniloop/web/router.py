"""Every page route: the admin shell and each module's pages."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from omniloop.analytics import pages as analytics_pages
from omniloop.campaigns import code_pages as campaign_code_pages
from omniloop.campaigns import consumer_pages as campaign_consumer_pages
from omniloop.campaigns import pages as campaign_pages
from omniloop.campaigns import pos_pages
from omniloop.catalog import pages as catalog_pages
from omniloop.core.errors_http import set_page_error_renderer
from omniloop.customers import pages as customers_pages
from omniloop.customers.consent_pages import router as consent_pages_router
from omniloop.imports.pages import router as imports_pages_router
from omniloop.loops import consumer_pages as loops_consumer_pages
from omniloop.loops import pages as loops_pages
from omniloop.loops import privacy as loops_privacy  # noqa: F401  (export and erasure)
from omniloop.loyalty import pages as loyalty_pages
from omniloop.loyalty import sections as loyalty_sections  # noqa: F401  (360 section)
from omniloop.messaging import journey_pages as messaging_journey_pages
from omniloop.messaging import pages as messaging_pages
from omniloop.messaging import privacy as messaging_privacy  # noqa: F401  (export, erasure)
from omniloop.messaging import sections as messaging_sections  # noqa: F401  (360 section)
from omniloop.messaging import template_pages as messaging_template_pages
from omniloop.messaging import tracking_routes as messaging_tracking
from omniloop.messaging import webhook_routes as messaging_webhooks
from omniloop.orders import sections as orders_sections  # noqa: F401  (registers its 360 section)
from omniloop.tenancy import pages as tenancy_pages
from omniloop.web import admin
from omniloop.web.errors import render_page_error

set_page_error_renderer(render_page_error)

root_router = APIRouter(include_in_schema=False)


@root_router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/admin", status_code=303)


# Pages and webhooks: none of them is part of the API's OpenAPI description.
WEB_ROUTERS: tuple[APIRouter, ...] = (
    root_router,
    admin.router,
    tenancy_pages.router,
    catalog_pages.router,
    customers_pages.router,
    consent_pages_router,
    imports_pages_router,
    campaign_pages.router,
    campaign_code_pages.router,
    campaign_consumer_pages.router,
    pos_pages.router,
    loops_pages.router,
    loops_consumer_pages.router,
    loyalty_pages.router,
    analytics_pages.router,
    messaging_webhooks.router,
    messaging_tracking.router,
    messaging_pages.router,
    messaging_journey_pages.router,
    messaging_template_pages.router,
)
