"""HTTP API of the orders module. Thin: parse, call the service, shape the answer.

Ingestion, called for every sale at every till, is `async` and runs its unit of work in one
trip to the threadpool (`deps.in_unit_of_work`), and serialises its answer itself
(`response_model` stays for the OpenAPI document): FastAPI would validate the answer a
second time against the model it was built from.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request, Response, status

from omniloop.api.deps import ApiActor, SessionDep, in_unit_of_work
from omniloop.core.db import Session
from omniloop.core.schemas import json_response
from omniloop.orders import refunds, service
from omniloop.orders.models import Order
from omniloop.orders.schemas import OrderIn, OrderOut, RefundIn, RefundOut

router = APIRouter(tags=["orders"])

_LIMIT = Query(default=50, ge=1, le=500, description="At most this many orders.")
_BEFORE = Query(default=None, description="Paging: the `paid_at` of the last order received.")
_BEFORE_ID = Query(default=None, max_length=26,
                   description="Paging: the `id` of the last order received.")


@router.post("/orders", name="ingest", summary="Record an order",
             response_model=OrderOut, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": OrderOut,
                              "description": "A retry: the order recorded the first time."}})
async def ingest_order(body: OrderIn, actor: ApiActor, request: Request) -> Response:
    """Record a purchase from a POS (`pos` scope) or an e-commerce system (`ingest` scope).

    Idempotent by `external_id`: sending the same order again answers 200 with the order
    recorded the first time and changes nothing; the same `external_id` with different
    content answers 409 `order_conflict`. The buyer is `customer_id`, or found (created,
    merged) from `identities`, or nobody (a walk-in). Totals are computed from the lines;
    a `total_minor` sent must match. Each order also records a `purchase` event.
    """
    def work(session: Session) -> tuple[Order, bool]:
        return service.ingest_order(session, actor, body)

    # The order comes back loaded (lines, refunds) and is serialised after its unit of work,
    # which on SQLite holds the write lock.
    order, created = await in_unit_of_work(request, work)
    return json_response(OrderOut.of(order),
                         status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("/orders", name="list", summary="List orders", response_model=list[OrderOut])
def list_orders(
    actor: ApiActor,
    session: SessionDep,
    store_id: str | None = Query(default=None, max_length=26, description="Only this store."),
    paid_from: datetime | None = Query(default=None, description="Paid at or after this."),
    paid_to: datetime | None = Query(default=None, description="Paid before this."),
    limit: int = _LIMIT,
    before: datetime | None = _BEFORE,
    before_id: str | None = _BEFORE_ID,
) -> list[OrderOut]:
    """Orders newest first by payment time. Times without a UTC offset are read in the
    brand's time zone. For the next page pass the last order's `paid_at` as `before` and
    its `id` as `before_id`. Store-bound keys see their store's orders only."""
    return [OrderOut.of(o) for o in service.list_orders(
        session, actor, store_id=store_id, paid_from=paid_from, paid_to=paid_to, limit=limit,
        before=before, before_id=before_id)]


@router.get("/orders/{order_id}", name="get", summary="Get an order", response_model=OrderOut)
def get_order(order_id: str, actor: ApiActor, session: SessionDep) -> OrderOut:
    """One order with its lines and refunds; any other brand's or store's id answers 404."""
    return OrderOut.of(service.get_order(session, actor, order_id))


@router.post("/orders/{order_id}/refunds", name="refund", summary="Refund an order",
             response_model=RefundOut, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": RefundOut,
                              "description": "A retry: the refund recorded the first time."}})
def refund_order(order_id: str, body: RefundIn, actor: ApiActor, session: SessionDep,
                 response: Response) -> RefundOut:
    """Refund an order in full (send neither `amount_minor` nor `lines`), by an amount, or
    for returned lines (by `line_id` or `position`, with quantities).

    Line refunds are priced from each line's amount after its share of the discounts. A
    refund larger than what is left answers 422 naming the field and changes nothing.
    Idempotent by `external_id`: a retry answers 200 with the first refund.
    """
    created_refund, created = refunds.refund(session, actor, order_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return RefundOut.of(created_refund)


@router.get("/customers/{customer_id}/orders", name="customer-orders",
            summary="A customer's orders", response_model=list[OrderOut])
def customer_orders(
    customer_id: str,
    actor: ApiActor,
    session: SessionDep,
    limit: int = _LIMIT,
    before: datetime | None = _BEFORE,
    before_id: str | None = _BEFORE_ID,
) -> list[OrderOut]:
    """The customer's orders newest first, including those of profiles merged into it."""
    return [OrderOut.of(o) for o in service.list_customer_orders(
        session, actor, customer_id, limit=limit, before=before, before_id=before_id)]
