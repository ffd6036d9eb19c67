"""HTTP API of the customers module."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request, Response
from sqlalchemy import Table, bindparam, select

from omniloop.api.deps import ApiActor, SessionDep, in_unit_of_work
from omniloop.core.db import Session
from omniloop.customers import identify as identify_service
from omniloop.customers.models import Customer, CustomerIdentity
from omniloop.customers.profiles import get_customer, identities_of, profile_ids
from omniloop.customers.schemas import (
    CustomerOut,
    IdentifyIn,
    IdentifyOut,
    IdentityOut,
    MergeOut,
)

router = APIRouter(tags=["customers"])

_IDENTITIES = cast(Table, CustomerIdentity.__table__)
# `profiles.identities_of` as a statement built once, for identify's answer.
_IDENTITIES_OF = select(_IDENTITIES.c.id, _IDENTITIES.c.kind, _IDENTITIES.c.value,
                        _IDENTITIES.c.source, _IDENTITIES.c.created_at).where(
    _IDENTITIES.c.tenant_id == bindparam("tenant_id"),
    _IDENTITIES.c.customer_id == bindparam("customer_id"))


def customer_out(session: Session, customer: Customer) -> CustomerOut:
    identities = [IdentityOut.model_validate(i)
                  for i in identities_of(session, customer.tenant_id, customer.id)]
    return CustomerOut.model_validate(customer).model_copy(update={"identities": identities})


def identify_answer(session: Session, tenant_id: str,
                    done: identify_service.Identified) -> IdentifyOut:
    """What identify answers: the profile as the call left it, with its identities."""
    if done.profile is None:  # merged: the ORM has the survivor
        customer = customer_out(session, done.customer or session.get_one(
            Customer, (tenant_id, done.customer_id)))
    else:
        rows = session.connection().execute(_IDENTITIES_OF, {"tenant_id": tenant_id,
                                                             "customer_id": done.customer_id})
        # Sorted as profiles.identities_of sorts them.
        identities = [IdentityOut.model_validate(row._mapping) for row in sorted(
            rows, key=lambda row: (row.kind.value, row.created_at, row.id))]
        customer = CustomerOut.model_validate({**done.profile, "identities": identities})
    return IdentifyOut(customer=customer, created=done.created, merged=done.merged)


@router.post("/customers/identify", name="identify", summary="Find or create a customer",
             response_model=IdentifyOut)
async def identify(body: IdentifyIn, actor: ApiActor, request: Request) -> Response:
    """Find the customer behind these identities, or create one.

    Phones are normalised to E.164 (default region TW), e-mails lower-cased. When the
    identities belong to several existing customers, they are merged into the oldest profile
    and the merge is recorded (it can be undone). Traits sent are set; tags are added.
    """
    def work(session: Session) -> bytes:
        done = identify_service.identify_profile(session, actor, body.identities, body.traits,
                                                 source=body.source)
        return identify_answer(session, actor.tenant_id, done).model_dump_json().encode()

    # The answer is serialised by IdentifyOut itself: response_model stays for the OpenAPI.
    return Response(await in_unit_of_work(request, work), media_type="application/json")


@router.get("/customers/{customer_id}", name="get", summary="Get a customer",
            response_model=CustomerOut)
def get(customer_id: str, actor: ApiActor, session: SessionDep) -> CustomerOut:
    """A customer by id. The id of a profile that was merged away answers with the survivor."""
    return customer_out(session, get_customer(session, actor, customer_id))


@router.get("/customers/{customer_id}/merges", name="merges", summary="Merge history",
            response_model=list[MergeOut])
def merges(customer_id: str, actor: ApiActor, session: SessionDep) -> list[MergeOut]:
    customer = get_customer(session, actor, customer_id)
    ids = profile_ids(session, actor.tenant_id, customer.id)
    return [MergeOut.model_validate(m)
            for m in identify_service.list_merges(session, actor, ids)]


@router.post("/customers/merges/{merge_id}/undo", name="undo-merge", summary="Undo a merge",
             response_model=MergeOut)
def undo_merge(merge_id: str, actor: ApiActor, session: SessionDep) -> MergeOut:
    """Split a merged profile back into the two profiles it was made of."""
    return MergeOut.model_validate(identify_service.undo_merge(session, actor, merge_id))
