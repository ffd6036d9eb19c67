"""Mounts each domain module's routes under /api/v1."""

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

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(tenancy_router)
api_router.include_router(catalog_router)
api_router.include_router(customers_router)
api_router.include_router(event_routes.router)
api_router.include_router(orders_router)
api_router.include_router(privacy_router)
api_router.include_router(campaigns_routes.router)
api_router.include_router(code_routes.router)
api_router.include_router(pos_routes.router)
api_router.include_router(loyalty_router)
api_router.include_router(loops_router)
api_router.include_router(messaging_router)
