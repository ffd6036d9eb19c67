"""The domain modules' API routers, added by the app under /api/v1 (`API_PREFIX`), and the
busiest calls' fast lanes (`api.fastlane`)."""

from __future__ import annotations

from fastapi import APIRouter

from omniloop.api.fastlane import Lane
from omniloop.campaigns import code_routes, pos_routes
from omniloop.campaigns import routes as campaigns_routes
from omniloop.campaigns.schemas import PosCheckIn, RedeemIn
from omniloop.catalog.routes import router as catalog_router
from omniloop.customers import event_routes
from omniloop.customers import routes as customers_routes
from omniloop.customers.privacy_routes import router as privacy_router
from omniloop.customers.schemas import IdentifyIn
from omniloop.loops.routes import router as loops_router
from omniloop.loyalty.routes import router as loyalty_router
from omniloop.messaging.routes import router as messaging_router
from omniloop.orders import routes as orders_routes
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.routes import router as tenancy_router

API_PREFIX = "/api/v1"

API_ROUTERS: tuple[APIRouter, ...] = (
    tenancy_router,
    catalog_router,
    customers_routes.router,
    event_routes.router,
    orders_routes.router,
    privacy_router,
    campaigns_routes.router,
    code_routes.router,
    pos_routes.router,
    loyalty_router,
    loops_router,
    messaging_router,
)

# Each till's calls: route functions that take (body, actor, request) and answer a Response.
API_LANES: dict[tuple[str, str], Lane] = {
    ("POST", f"{API_PREFIX}/orders"): Lane(orders_routes.ingest_order, OrderIn),
    ("POST", f"{API_PREFIX}/customers/identify"): Lane(customers_routes.identify, IdentifyIn),
    ("POST", f"{API_PREFIX}/pos/validate"): Lane(pos_routes.validate, PosCheckIn),
    ("POST", f"{API_PREFIX}/pos/redeem"): Lane(pos_routes.redeem_coupon, RedeemIn,
                                               {"idempotency_key": b"idempotency-key"}),
}
