"""HTTP API of consent and personal data: consents per channel, export, erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.core.db import Session
from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.customers import consent as consent_service
from omniloop.customers import privacy
from omniloop.customers.models import Channel, ConsentStatus, CustomerConsent
from omniloop.customers.profiles import get_customer
from omniloop.customers.routes import customer_out
from omniloop.customers.schemas import CustomerOut

router = APIRouter(tags=["customers"])


class ConsentIn(RequestModel):
    status: ConsentStatus
    source: str = Field(default="api", min_length=1, max_length=80, examples=["pos"],
                        description="Where the customer said so: pos, web, line, form, ...")


class ConsentOut(ResponseModel):
    channel: Channel
    status: ConsentStatus | None = Field(
        description="null: the customer never said; no marketing messages are sent then.")
    source: str | None
    changed_at: datetime | None
    may_message: bool = Field(description="Whether marketing messages may go out on this "
                                          "channel now.")


class ErasureIn(RequestModel):
    reason: str = Field(min_length=1, max_length=privacy.REASON_MAX,
                        examples=["The customer asked at the counter on 2026-03-02."],
                        description="Why: kept in the audit log (the customer's identifiers "
                                    "in it are redacted).")


class ErasureOut(ResponseModel):
    customer: CustomerOut
    profile_ids: list[str] = Field(description="The survivor and every profile merged into "
                                               "it: all were erased.")
    counts: dict[str, int] = Field(description="What was removed or scrubbed, per kind.")


def _consent_out(channel: Channel, row: CustomerConsent | None, erased: bool) -> ConsentOut:
    if row is None:
        return ConsentOut(channel=channel, status=None, source=None, changed_at=None,
                          may_message=False)
    return ConsentOut(channel=channel, status=row.status, source=row.source,
                      changed_at=row.changed_at,
                      may_message=row.status is ConsentStatus.opted_in and not erased)


def _consents(session: Session, tenant_id: str, customer_id: str,
              erased: bool) -> dict[Channel, ConsentOut]:
    rows = consent_service.consents_of(session, tenant_id, customer_id)
    return {channel: _consent_out(channel, rows.get(channel), erased) for channel in Channel}


@router.get("/customers/{customer_id}/consents", name="consents", summary="Consents",
            response_model=list[ConsentOut])
def consents(customer_id: str, actor: ApiActor, session: SessionDep) -> list[ConsentOut]:
    """The customer's consent to marketing messages on each channel (LINE, e-mail, SMS).

    Consent is opt-in: a channel the customer never opted in to has `status: null` and
    `may_message: false`. Profiles merged into this one count; the latest change wins.
    """
    customer = get_customer(session, actor, customer_id)
    return list(_consents(session, actor.tenant_id, customer.id,
                          customer.erased_at is not None).values())


@router.put("/customers/{customer_id}/consents/{channel}", name="set-consent",
            summary="Opt in or out", response_model=ConsentOut)
def set_consent(customer_id: str, channel: Channel, body: ConsentIn, actor: ApiActor,
                session: SessionDep) -> ConsentOut:
    """Record the customer's opt-in or opt-out for one channel, with where it was given.

    Each change is kept in the customer's events as `consent_changed`; sending the current
    status again changes nothing. An erased customer answers 409 `customer_erased`.
    """
    row = consent_service.set_consent(session, actor, customer_id, channel, body.status,
                                      body.source)
    return _consent_out(channel, row, erased=False)


@router.get("/customers/{customer_id}/export", name="export",
            summary="Export a customer's personal data",
            response_model=dict[str, Any],
            responses={200: {"description": "A JSON file to download."}})
def export(customer_id: str, actor: ApiActor, session: SessionDep) -> JSONResponse:
    """Everything held about the person (PDPA / GDPR access request), as a JSON download.

    Covers the profile and every profile merged into it: traits, identities, consents,
    merges, all events oldest first, and the sections other modules add (orders, points, …).
    """
    data = privacy.export_customer(session, actor, customer_id)
    return JSONResponse(data, headers={
        "Content-Disposition": f"attachment; filename=customer-{data['customer_id']}.json",
        "Cache-Control": "no-store"})


@router.post("/customers/{customer_id}/erase", name="erase",
             summary="Erase a customer's personal data", response_model=ErasureOut)
def erase(customer_id: str, body: ErasureIn, actor: ApiActor,
          session: SessionDep) -> ErasureOut:
    """Remove what identifies the person; keep the numbers (PDPA / GDPR erasure).

    Identities and consents are deleted, traits cleared (the home store stays), event
    properties cut to non-personal keys; events and orders stay, on the anonymous profile.
    Needs the `admin` scope; owners only in the admin. Erasing again answers 409
    `customer_erased`. After this, the old phone or e-mail identifies nobody: identifying
    with it creates a new, unrelated profile.
    """
    result = privacy.erase_customer(session, actor, customer_id, body.reason)
    return ErasureOut(customer=customer_out(session, result.customer),
                      profile_ids=result.profile_ids, counts=result.counts)
