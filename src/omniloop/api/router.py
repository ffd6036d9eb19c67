"""The domain modules' API routers, added by the app under /api/v1 (`API_PREFIX`)."""

from __future__ import annotations

from fastapi import APIRouter

from omniloop.campaigns import code_routes, pos_routes
from omniloop.campaigns import routes as campaigns_routes
from omniloop.catalog.routes import router as catalog_router
from omniloop.customers import event_routes
from omniloop.customers.privacy_routes import router as privacy_router
from omniloop.customers.routes import router as customers_router
from omniloop.loops.routes import router as loops_router
from omniloop.loyalty.routes import router as loyalty_router
from omniloop.messaging.routes import router as messaging_router
from omniloop.orders.routes import router as orders_router
from omniloop.tenancy.routes import router as tenancy_router

API_PREFIX = "/api/v1"

API_ROUTERS: tuple[APIRouter, ...] = (
    tenancy_router,
    catalog_router,
    customers_router,
    event_routes.router,
    orders_router,
    privacy_router,
    campaigns_routes.router,
    code_routes.router,
    pos_routes.router,
    loyalty_router,
    loops_router,
    messaging_router,
)
