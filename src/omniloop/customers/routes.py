"""HTTP API of the customers module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from sqlalchemy import Table, bindparam, select

from omniloop.api.deps import ApiActor, SessionDep, in_unit_of_work
from omniloop.core.db import Session
from omniloop.core.prepared import Prepared
from omniloop.core.schemas import json_response
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
# `profiles.identities_of` as a prepared statement, for identify's answer.
_IDENTITY_FIELDS = ("id", "kind", "value", "source", "created_at")
_IDENTITIES_OF = Prepared(select(*(_IDENTITIES.c[name] for name in _IDENTITY_FIELDS)).where(
    _IDENTITIES.c.tenant_id == bindparam("tenant_id"),
    _IDENTITIES.c.customer_id == bindparam("customer_id")))


def customer_out(session: Session, customer: Customer) -> CustomerOut:
    identities = [IdentityOut.model_validate(i)
                  for i in identities_of(session, customer.tenant_id, customer.id)]
    return CustomerOut.model_validate(customer).model_copy(update={"identities": identities})


@dataclass(frozen=True)
class _IdentifyFacts:
    """What identify's answer is made of, read in its unit of work: the profile as the call
    left it, or the merged survivor's answer, already made."""

    done: identify_service.Identified
    identities: list[tuple[Any, ...]]
    customer: CustomerOut | None = None


def _identify_facts(session: Session, tenant_id: str,
                    done: identify_service.Identified) -> _IdentifyFacts:
    if done.profile is None:  # merged: the ORM has the survivor
        return _IdentifyFacts(done, [], customer_out(session, done.customer or session.get_one(
            Customer, (tenant_id, done.customer_id))))
    return _IdentifyFacts(done, _IDENTITIES_OF.rows(
        session, {"tenant_id": tenant_id, "customer_id": done.customer_id}))


def _identify_out(facts: _IdentifyFacts) -> IdentifyOut:
    done, customer = facts.done, facts.customer
    if customer is None:
        assert done.profile is not None
        # Sorted as profiles.identities_of sorts them.
        identities = [IdentityOut.model_validate(dict(zip(_IDENTITY_FIELDS, row, strict=True)))
                      for row in sorted(facts.identities,
                                        key=lambda row: (row[1].value, row[4], row[0]))]
        customer = CustomerOut.model_validate({**done.profile, "identities": identities})
    return IdentifyOut(customer=customer, created=done.created, merged=done.merged)


def identify_answer(session: Session, tenant_id: str,
                    done: identify_service.Identified) -> IdentifyOut:
    """What identify answers: the profile as the call left it, with its identities."""
    return _identify_out(_identify_facts(session, tenant_id, done))


@router.post("/customers/identify", name="identify", summary="Find or create a customer",
             response_model=IdentifyOut)
async def identify(body: IdentifyIn, actor: ApiActor, request: Request) -> Response:
    """Find the customer behind these identities, or create one.

    Phones are normalised to E.164 (default region TW), e-mails lower-cased. When the
    identities belong to several existing customers, they are merged into the oldest profile
    and the merge is recorded (it can be undone). Traits sent are set; tags are added.
    """
    def work(session: Session) -> _IdentifyFacts:
        done = identify_service.identify_profile(session, actor, body.identities, body.traits,
                                                 source=body.source)
        return _identify_facts(session, actor.tenant_id, done)

    # The answer is made after the unit of work (which, on SQLite, holds the write lock) and
    # serialised by IdentifyOut itself: response_model stays for the OpenAPI document.
    facts = await in_unit_of_work(request, work)
    return json_response(_identify_out(facts))


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
