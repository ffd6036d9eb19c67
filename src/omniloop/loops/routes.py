"""The loop's API: receipt QR codes for the POS, and the loop report for BI tools."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, status
from pydantic import Field
from sqlalchemy import select

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.core.errors import N_, ValidationFailed
from omniloop.core.qr import qr_svg
from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.loops.errors import NoReceiptTouchpoint
from omniloop.loops.feedback import issue_receipt, receipt_url
from omniloop.loops.models import Placement, Purpose, Touchpoint
from omniloop.loops.report import LoopFigures, loop_report

router = APIRouter(prefix="/loops", tags=["loops"])


class ReceiptIn(RequestModel):
    order_id: str = Field(min_length=26, max_length=26, description="The order's omniloop id.")
    staff: str = Field(default="", max_length=80, description="Who served, as printed.")


class ReceiptOut(ResponseModel):
    receipt_id: str
    order_id: str
    url: str = Field(description="What the receipt's QR code holds.")
    qr_svg: str = Field(description="The QR code as inline SVG, ready to print.")


@router.post("/receipts", summary="Receipt QR for an order", response_model=ReceiptOut,
             status_code=status.HTTP_201_CREATED)
def receipt(body: ReceiptIn, actor: ApiActor, session: SessionDep) -> ReceiptOut:
    """A signed receipt QR (order, store, staff) that opens the store's feedback page for
    this visit. Asking again for the same order returns the same receipt. Needs a receipt
    touchpoint (purpose feedback) in use at the order's store: `409 no_receipt_touchpoint`."""
    issued = issue_receipt(session, actor, body.order_id, body.staff)
    code = session.scalar(select(Touchpoint.code).where(
        Touchpoint.tenant_id == actor.tenant_id, Touchpoint.store_id == issued.receipt.store_id,
        Touchpoint.placement == Placement.receipt, Touchpoint.purpose == Purpose.feedback,
        Touchpoint.enabled.is_(True)).order_by(Touchpoint.created_at).limit(1))
    if code is None:
        raise NoReceiptTouchpoint()
    url = receipt_url(code, issued.token)
    return ReceiptOut(receipt_id=issued.receipt.id, order_id=issued.receipt.order_id, url=url,
                      qr_svg=qr_svg(url, scale=3))


class FiguresOut(ResponseModel):
    store_id: str | None
    store_name: str
    scans: int
    identified: int
    acted: int
    actions: dict[str, int]
    referred: int
    first_purchases: int
    referred_qualified: int
    referred_pending: int
    referred_expired: int
    purchasers: int
    purchasers_online: int
    offline_online_rate: float | None
    acquired: int
    active: int
    k: float | None

    @classmethod
    def of(cls, f: LoopFigures) -> FiguresOut:
        return cls(store_id=f.store_id, store_name=f.store_name, scans=f.scans,
                   identified=f.identified, acted=f.acted, actions=f.actions,
                   referred=f.referred, first_purchases=f.first_purchases,
                   referred_qualified=f.qualified_now, referred_pending=f.referred_pending,
                   referred_expired=f.referred_expired,
                   purchasers=f.purchasers, purchasers_online=f.purchasers_online,
                   offline_online_rate=f.offline_online_rate, acquired=f.acquired,
                   active=f.active, k=f.k)


class ReportOut(ResponseModel):
    start: datetime
    end: datetime
    overall: FiguresOut
    stores: list[FiguresOut]


class BadRange(ValidationFailed):
    code = "range_invalid"
    message = N_("The end of the range must come after its start, both with a time zone.")


@router.get("/report", summary="The loop report", response_model=ReportOut)
def report(actor: ApiActor, session: SessionDep, start: datetime = Query(),
           end: datetime = Query(), store_id: str | None = None) -> ReportOut:
    """Scans → identified → online actions → referred friends → their first store purchases,
    the offline→online rate and K (docs/loops.md), for [start, end), overall and per store."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise BadRange()
    result = loop_report(session, actor, start, end, store_id)
    return ReportOut(start=result.start, end=result.end, overall=FiguresOut.of(result.overall),
                     stores=[FiguresOut.of(f) for f in result.stores])
