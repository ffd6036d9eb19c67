"""Incoming webhooks: `/webhooks/line/<brand>`. Thin: line_webhook.py holds the rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from omniloop.api.deps import in_unit_of_work
from omniloop.messaging import line_webhook, worker

# A process that serves the webhooks and pages wakes the worker after its commits.
worker.install_waker()

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/line/{tenant_slug}", summary="LINE Messaging API webhook",
             operation_id="webhooks-line")
async def line_webhook_endpoint(
        tenant_slug: str, request: Request,
        x_line_signature: Annotated[str | None, Header()] = None) -> dict[str, int]:
    """Follow, unfollow, keyword and postback events of the brand's LINE official account.

    Refused with 401 `invalid_signature` unless `X-Line-Signature` matches the body; each
    `webhookEventId` is acted on once however often LINE delivers it.
    """
    body = await request.body()
    result = await in_unit_of_work(request, lambda session: line_webhook.handle(
        session, tenant_slug, body, x_line_signature))
    return {"received": result.received, "processed": result.processed,
            "duplicates": result.duplicates}
