"""HTTP API of the customers module."""

from __future__ import annotations

from fastapi import APIRouter

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.core.db import Session
from omniloop.customers import identify as identify_service
from omniloop.customers.models import Customer
from omniloop.customers.profiles import get_customer, identities_of, profile_ids
from omniloop.customers.schemas import (
    CustomerOut,
    IdentifyIn,
    IdentifyOut,
    IdentityOut,
    MergeOut,
)

router = APIRouter(tags=["customers"])


def customer_out(session: Session, customer: Customer) -> CustomerOut:
    identities = [IdentityOut.model_validate(i)
                  for i in identities_of(session, customer.tenant_id, customer.id)]
    return CustomerOut.model_validate(customer).model_copy(update={"identities": identities})


@router.post("/customers/identify", name="identify", summary="Find or create a customer",
             response_model=IdentifyOut)
def identify(body: IdentifyIn, actor: ApiActor, session: SessionDep) -> IdentifyOut:
    """Find the customer behind these identities, or create one.

    Phones are normalised to E.164 (default region TW), e-mails lower-cased. When the
    identities belong to several existing customers, they are merged into the oldest profile
    and the merge is recorded (it can be undone). Traits sent are set; tags are added.
    """
    result = identify_service.identify(session, actor, body.identities, body.traits,
                                       source=body.source)
    return IdentifyOut(customer=customer_out(session, result.customer), created=result.created,
                       merged=result.merged)


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
