"""Admin pages of the customers module: search, and the customer 360 page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from omniloop.api.deps import SessionDep
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers import identify as identify_service
from omniloop.customers.consent import consents_of
from omniloop.customers.event_types import EVENT_TYPES
from omniloop.customers.ingest import timeline
from omniloop.customers.models import Channel, Customer, CustomerMerge, Gender, IdentityKind
from omniloop.customers.profiles import get_customer, identities_of, profile_ids
from omniloop.customers.search import search_customers
from omniloop.customers.sections import ProfileSection, register_section, sections_for
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import get_store, list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, register_flash
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

register(NavItem("customers", N_("Customers"), "/admin/customers", Permission.customers_read, 5))
audit.register_action("customer.merge", N_("Customers merged"))
audit.register_action("customer.unmerge", N_("Merge undone"))
audit.register_action("customer.consent", N_("Consent changed"))
audit.register_action("customer.erase", N_("Personal data erased"))
register_flash("merge_undone", N_("The merge was undone: the two profiles are separate again."))

IDENTITY_LABELS: dict[IdentityKind, str] = {
    IdentityKind.phone: N_("Phone"),
    IdentityKind.email: N_("E-mail"),
    IdentityKind.line: N_("LINE"),
    IdentityKind.pos_card: N_("Member card"),
    IdentityKind.ecommerce: N_("Online shop"),
    IdentityKind.device: N_("Device"),
}
CHANNEL_LABELS: dict[Channel, str] = {
    Channel.line: N_("LINE"), Channel.email: N_("E-mail"), Channel.sms: N_("SMS"),
}
GENDER_LABELS: dict[Gender, str] = {
    Gender.female: N_("Female"), Gender.male: N_("Male"), Gender.other: N_("Other"),
}


def _identities_section(session: Session, actor: Actor, customer: Customer,
                        ids: set[str]) -> dict[str, Any]:
    return {"identities": identities_of(session, actor.tenant_id, customer.id),
            "labels": IDENTITY_LABELS}


def _merges_section(session: Session, actor: Actor, customer: Customer,
                    ids: set[str]) -> dict[str, Any]:
    merges: list[CustomerMerge] = identify_service.list_merges(session, actor, ids)
    involved = {m.survivor_id for m in merges} | {m.merged_id for m in merges}
    names = dict(session.execute(select(Customer.id, Customer.name).where(
        Customer.tenant_id == actor.tenant_id, Customer.id.in_(involved))).all())
    return {"merges": merges, "names": names,
            "can_undo": actor.can(Permission.customers_merge)}


def _consent_section(session: Session, actor: Actor, customer: Customer,
                     ids: set[str]) -> dict[str, Any]:
    current = consents_of(session, actor.tenant_id, customer.id)
    return {"rows": [(channel, current.get(channel)) for channel in Channel],
            "labels": CHANNEL_LABELS}


register_section(ProfileSection("identities", N_("Identities"), "admin/sections/identities.html",
                                10, _identities_section))
register_section(ProfileSection("consent", N_("Marketing consent"), "admin/sections/consent.html",
                                20, _consent_section))
TIMELINE_EVENTS = 50


def _timeline_section(session: Session, actor: Actor, customer: Customer,
                      ids: set[str]) -> dict[str, Any]:
    _, events = timeline(session, actor, customer.id, limit=TIMELINE_EVENTS)
    return {"events": events, "types": EVENT_TYPES,
            "store_names": {s.id: s.name for s in list_stores(session, actor)}}




@dataclass(frozen=True)
class CustomerFlag:
    """A warning staff should see beside a customer's name (blacklisted, high risk...).

    Modules that know such things (loyalty: no-shows and the blacklist) register a loader
    that answers for a whole list of customers at once, so a page of search results costs
    one query per module, not one per row.
    """

    key: str  # stable, for tests and CSS: "blacklisted"
    label: str  # English msgid, translated when rendered
    tone: str  # badge colour: "danger", "warn"
    detail: str = ""  # shown on hover: the reason, the end date (already in the language)


FlagLoader = Callable[[Session, Actor, list[str]], dict[str, list[CustomerFlag]]]
_flag_loaders: list[FlagLoader] = []


def register_flags(loader: FlagLoader) -> None:
    if loader not in _flag_loaders:
        _flag_loaders.append(loader)


def flags_of(session: Session, actor: Actor, customer_ids: list[str]
             ) -> dict[str, list[CustomerFlag]]:
    found: dict[str, list[CustomerFlag]] = {}
    if not customer_ids:
        return found
    for loader in _flag_loaders:
        for customer_id, flags in loader(session, actor, customer_ids).items():
            found.setdefault(customer_id, []).extend(flags)
    return found


register_section(ProfileSection("timeline", N_("Timeline"), "admin/sections/timeline.html", 40,
                                _timeline_section))
register_section(ProfileSection("merges", N_("Merge history"), "admin/sections/merges.html",
                                90, _merges_section))


@router.get("/customers")
def customer_search(admin: Admin, session: SessionDep, q: str = "") -> Response:
    results = search_customers(session, admin.actor, q[:254])
    identities = {c.id: identities_of(session, admin.actor.tenant_id, c.id) for c in results}
    return render(admin.request, "admin/customers.html", admin.template_values(
        "customers", q=q, results=results, identities=identities, labels=IDENTITY_LABELS,
        flags=flags_of(session, admin.actor, [c.id for c in results])))


@router.get("/customers/{customer_id}")
def customer_profile(customer_id: str, admin: Admin, session: SessionDep,
                     done: str | None = None) -> Response:
    customer = get_customer(session, admin.actor, customer_id)
    if customer.id != customer_id:  # a merged-away id: show the profile it lives in now
        return RedirectResponse(f"/admin/customers/{customer.id}", status_code=303)
    return profile_page(admin, session, customer_id, flash=flash_message(done))


def profile_page(admin: AdminContext, session: Session, customer_id: str, *,
                 flash: str | None = None, flash_kind: str = "ok",
                 forms: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """The 360 page. Sections with forms of their own (points adjustments, no-shows) post
    elsewhere and, when the service refuses, render this page again through here with
    `forms`: what was typed and the message per field, which their template reads."""
    customer = get_customer(session, admin.actor, customer_id)
    ids = profile_ids(session, admin.actor.tenant_id, customer.id)
    sections = [(section, section.load(session, admin.actor, customer, ids))
                for section in sections_for(admin.actor)]
    home_store = (get_store(session, admin.actor, customer.home_store_id)
                  if customer.home_store_id else None)
    return render(admin.request, "admin/customer.html", admin.template_values(
        "customers", customer=customer, sections=sections, home_store=home_store,
        genders=GENDER_LABELS, flash=flash, flash_kind=flash_kind, forms=forms or {},
        flags=flags_of(session, admin.actor, [customer.id]).get(customer.id, [])),
        status_code=status_code)


@router.post("/customers/merges/{merge_id}/undo", dependencies=[CsrfChecked])
def undo_merge(merge_id: str, admin: Admin, session: SessionDep) -> Response:
    record = identify_service.undo_merge(session, admin.actor, merge_id)
    return redirect_done(f"/admin/customers/{record.survivor_id}", "merge_undone")
