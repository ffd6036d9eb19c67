"""Admin pages for stores, staff, API keys and the audit log.

Thin HTML over the tenancy services: read the form, validate it with the module's schemas,
call the service, render. Rules live in the services and the schemas; this module only turns
their errors into messages beside the form fields, in the visitor's language.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from omniloop.api.deps import SessionDep
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.tenancy import apikeys, audit, staff, stores
from omniloop.tenancy.access import SCOPE_LABELS, Permission
from omniloop.tenancy.errors import (
    CannotRemoveLastOwner,
    StaffEmailTaken,
    StoreCodeTaken,
    StoreNotFound,
    StoresRequired,
)
from omniloop.tenancy.models import AuditEntry, Role, StaffUser, Store
from omniloop.tenancy.schemas import (
    WEEKDAYS,
    ApiKeyCreate,
    StaffCreate,
    StaffUpdate,
    StoreCreate,
    StoreFields,
    StoreUpdate,
    format_day_ranges,
    parse_day_ranges,
)
from omniloop.web.auth import Admin, AdminContext, CsrfChecked, sign_in
from omniloop.web.forms import (
    field_errors,
    flash_message,
    redirect_done,
    refused,
    register_flash,
)
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

register(NavItem("stores", N_("Stores"), "/admin/stores", Permission.stores_read, 10))
register(NavItem("staff", N_("Staff"), "/admin/staff", Permission.staff_read, 20))
register(NavItem("api_keys", N_("API keys"), "/admin/api-keys", Permission.apikeys_manage, 30))
register(NavItem("audit", N_("Audit log"), "/admin/audit", Permission.audit_read, 40))

AUDIT_PAGE_SIZE = 100

register_flash("store_created", N_("The store was created."))
register_flash("store_saved", N_("The store was saved."))
register_flash("staff_created", N_("The staff member was added."))
register_flash("staff_saved", N_("The staff member was saved."))
register_flash("key_revoked", N_("The API key was revoked."))

WEEKDAY_LABELS: dict[str, str] = {
    "mon": N_("Monday"), "tue": N_("Tuesday"), "wed": N_("Wednesday"),
    "thu": N_("Thursday"), "fri": N_("Friday"), "sat": N_("Saturday"), "sun": N_("Sunday"),
}

LANGUAGES: dict[str, str] = {"zh_TW": "中文（台灣）", "en": "English"}

audit.register_action("store.create", N_("Store created"))
audit.register_action("store.update", N_("Store changed"))
audit.register_action("staff.create", N_("Staff member added"))
audit.register_action("staff.update", N_("Staff member changed"))
audit.register_action("staff.locked", N_("Account locked"))
audit.register_action("api_key.create", N_("API key created"))
audit.register_action("api_key.revoke", N_("API key revoked"))

NAME_ERROR = N_("Enter a name of up to 120 characters.")
STORE_FIELD_ERRORS: dict[str, str] = {
    "code": N_("Use up to 32 letters, digits, '-' or '_'."),
    "name": NAME_ERROR,
    "address": N_("The address can have up to 255 characters."),
    "phone": N_("The phone number can have up to 32 characters."),
    "latitude": N_("Latitude is a number from -90 to 90, like 25.0330."),
    "longitude": N_("Longitude is a number from -180 to 180, like 121.5654."),
    # A model-level error (no field): StoreFields wants both coordinates or neither.
    "": N_("Give both latitude and longitude, or neither."),
}
HOURS_ERROR = N_("Write times like 07:30-21:00, two ranges separated by a comma; "
                 "closing must be after opening. Leave empty when closed.")
STAFF_FIELD_ERRORS: dict[str, str] = {
    "email": N_("Enter a valid e-mail address."),
    "name": NAME_ERROR,
    "password": N_("Use a password of at least 10 characters."),
    "role": N_("Choose a role."),
    "locale": N_("Choose a language."),
    "store_ids": N_("Choose stores from the list."),
}
API_KEY_FIELD_ERRORS: dict[str, str] = {
    "name": NAME_ERROR,
    "scopes": N_("Choose at least one scope."),
    "store_id": N_("Choose a store from the list."),
}


# --- stores ---------------------------------------------------------------------------------

class StoreForm(BaseModel):
    """The store form as posted: every field a string, checked by `StoreCreate`/`StoreFields`."""

    code: str = ""
    name: str = ""
    address: str = ""
    phone: str = ""
    latitude: str = ""
    longitude: str = ""
    active: bool = False
    hours_mon: str = ""
    hours_tue: str = ""
    hours_wed: str = ""
    hours_thu: str = ""
    hours_fri: str = ""
    hours_sat: str = ""
    hours_sun: str = ""

    def hours(self) -> dict[str, str]:
        return {day: str(getattr(self, f"hours_{day}")).strip() for day in WEEKDAYS}

    def values(self) -> dict[str, Any]:
        """What the template shows back to the user."""
        return {"code": self.code, "name": self.name, "address": self.address,
                "phone": self.phone, "latitude": self.latitude, "longitude": self.longitude,
                "active": self.active, "hours": self.hours()}


def _store_values(store: Store) -> dict[str, Any]:
    def coordinate(value: float | None) -> str:
        return "" if value is None else str(value)  # shortest text that reads back the same

    return {"code": store.code, "name": store.name, "address": store.address,
            "phone": store.phone, "latitude": coordinate(store.latitude),
            "longitude": coordinate(store.longitude), "active": store.active,
            "hours": {day: format_day_ranges(store.opening_hours.get(day, []))
                      for day in WEEKDAYS}}


def _parse_store(form: StoreForm, *, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values as schema input, and per-field error messages."""
    errors: dict[str, str] = {}
    hours: dict[str, list[dict[str, str]]] = {}
    for day, text in form.hours().items():
        try:
            ranges = parse_day_ranges(text)
        except ValueError:  # includes pydantic's ValidationError from TimeRange
            errors[f"hours_{day}"] = gettext(HOURS_ERROR)
            continue
        if ranges:
            hours[day] = [r.model_dump() for r in ranges]
    data: dict[str, Any] = {
        "name": form.name, "address": form.address, "phone": form.phone,
        "latitude": form.latitude.strip() or None, "longitude": form.longitude.strip() or None,
        "active": form.active, "opening_hours": hours,
    }
    if creating:
        data["code"] = form.code
    try:
        (StoreCreate if creating else StoreFields).model_validate(data)
    except ValidationError as exc:
        for field, message in field_errors(exc, STORE_FIELD_ERRORS, model_field="latitude").items():
            errors.setdefault(field, message)
    return data, errors


def _store_form(admin: AdminContext, *, store: Store | None, values: dict[str, Any],
                errors: dict[str, str] | None = None, status_code: int = 200) -> Response:
    return render(admin.request, "admin/store_form.html", admin.template_values(
        "stores", store=store, form=values, errors=errors or {}, weekdays=WEEKDAYS,
        weekday_labels=WEEKDAY_LABELS), status_code=status_code)


def _map_url(store: Store) -> str | None:
    if store.latitude is None or store.longitude is None:
        return None
    return ("https://www.google.com/maps/search/?"
            + urlencode({"api": "1", "query": f"{store.latitude},{store.longitude}"}))


@router.get("/stores")
def store_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    all_stores = stores.list_stores(session, admin.actor)
    today = WEEKDAYS[to_local(utcnow(), admin.tenant.timezone).weekday()]
    rows = [{"store": s, "map_url": _map_url(s),
             "hours_set": bool(s.opening_hours),
             "today": format_day_ranges(s.opening_hours.get(today, []))} for s in all_stores]
    return render(admin.request, "admin/stores.html", admin.template_values(
        "stores", rows=rows, today_label=WEEKDAY_LABELS[today], flash=flash_message(done),
        can_create=admin.actor.can(Permission.stores_create),
        can_edit=admin.actor.can(Permission.stores_update)))


@router.get("/stores/new")
def store_new(admin: Admin) -> Response:
    admin.actor.require(Permission.stores_create)
    return _store_form(admin, store=None, values=StoreForm(active=True).values())


@router.post("/stores/new", dependencies=[CsrfChecked])
def store_create(admin: Admin, session: SessionDep,
                 form: Annotated[StoreForm, Form()]) -> Response:
    admin.actor.require(Permission.stores_create)
    data, errors = _parse_store(form, creating=True)
    if not errors:
        try:
            stores.create_store(session, admin.actor, StoreCreate.model_validate(data))
        except StoreCodeTaken as exc:
            return _store_form(admin, store=None, values=form.values(),
                               errors={"code": refused(session, exc)}, status_code=exc.status)
        return redirect_done("/admin/stores", "store_created")
    return _store_form(admin, store=None, values=form.values(), errors=errors, status_code=422)


@router.get("/stores/{store_id}")
def store_edit(store_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.stores_update)
    store = stores.get_store(session, admin.actor, store_id)
    return _store_form(admin, store=store, values=_store_values(store))


@router.post("/stores/{store_id}", dependencies=[CsrfChecked])
def store_update(store_id: str, admin: Admin, session: SessionDep,
                 form: Annotated[StoreForm, Form()]) -> Response:
    admin.actor.require(Permission.stores_update)
    store = stores.get_store(session, admin.actor, store_id)
    data, errors = _parse_store(form, creating=False)
    if errors:
        values = form.values() | {"code": store.code}
        return _store_form(admin, store=store, values=values, errors=errors, status_code=422)
    stores.update_store(session, admin.actor, store.id, StoreUpdate.model_validate(data))
    return redirect_done("/admin/stores", "store_saved")


# --- staff ----------------------------------------------------------------------------------

class StaffForm(BaseModel):
    email: str = ""
    name: str = ""
    role: str = ""
    locale: str = ""
    password: str = ""
    active: bool = False
    store_ids: list[str] = []

    def values(self) -> dict[str, Any]:
        # The password is never sent back to the browser.
        return {"email": self.email, "name": self.name, "role": self.role,
                "locale": self.locale, "active": self.active, "store_ids": self.store_ids}


# Which form field shows a service error; anything else goes above the form.
STAFF_ERROR_FIELDS: dict[type[OmniloopError], str] = {
    StaffEmailTaken: "email", StoresRequired: "store_ids", StoreNotFound: "store_ids",
    CannotRemoveLastOwner: "role",
}


def _staff_form(admin: AdminContext, session: Session, *, member: StaffUser | None,
                values: dict[str, Any], errors: dict[str, str] | None = None,
                status_code: int = 200) -> Response:
    return render(admin.request, "admin/staff_form.html", admin.template_values(
        "staff", member=member, form=values, errors=errors or {}, roles=list(Role),
        languages=LANGUAGES,
        all_stores=stores.list_stores(session, admin.actor)), status_code=status_code)


def _staff_service_error(admin: AdminContext, session: Session, exc: OmniloopError, *,
                         member: StaffUser | None, values: dict[str, Any]) -> Response:
    field = STAFF_ERROR_FIELDS.get(type(exc), "form")
    message = refused(session, exc)
    return _staff_form(admin, session, member=member, values=values,
                       errors={field: message}, status_code=exc.status)


@router.get("/staff")
def staff_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    members = staff.list_staff(session, admin.actor)
    store_names = {s.id: s.name for s in stores.list_stores(session, admin.actor)}
    by_staff = staff.store_ids_by_staff(session, admin.tenant.id)
    now = utcnow()
    rows = [{"member": m,
             "stores": [store_names[i] for i in by_staff.get(m.id, []) if i in store_names],
             "all_stores": m.role not in staff.STORE_SCOPED_ROLES,
             "locked": m.locked_until is not None and as_utc(m.locked_until) > now}
            for m in members]
    return render(admin.request, "admin/staff.html", admin.template_values(
        "staff", rows=rows, flash=flash_message(done),
        can_manage=admin.actor.can(Permission.staff_manage)))


@router.get("/staff/new")
def staff_new(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.staff_manage)
    return _staff_form(admin, session, member=None,
                       values=StaffForm(role=Role.cashier.value, active=True).values())


@router.post("/staff/new", dependencies=[CsrfChecked])
def staff_create(admin: Admin, session: SessionDep,
                 form: Annotated[StaffForm, Form()]) -> Response:
    admin.actor.require(Permission.staff_manage)
    try:
        data = StaffCreate.model_validate({
            "email": form.email, "name": form.name, "password": form.password,
            "role": form.role, "store_ids": form.store_ids, "locale": form.locale or None})
    except ValidationError as exc:
        return _staff_form(admin, session, member=None, values=form.values(),
                           errors=field_errors(exc, STAFF_FIELD_ERRORS), status_code=422)
    try:
        staff.create_staff(session, admin.actor, data)
    except (StaffEmailTaken, StoresRequired, StoreNotFound) as exc:
        return _staff_service_error(admin, session, exc, member=None, values=form.values())
    return redirect_done("/admin/staff", "staff_created")


@router.get("/staff/{staff_id}")
def staff_edit(staff_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.staff_manage)
    member = staff.get_staff(session, admin.actor, staff_id)
    values = {"email": member.email, "name": member.name, "role": member.role.value,
              "locale": member.locale or "", "active": member.active,
              "store_ids": staff.store_ids_of(session, admin.tenant.id, member.id)}
    return _staff_form(admin, session, member=member, values=values)


@router.post("/staff/{staff_id}", dependencies=[CsrfChecked])
def staff_update(staff_id: str, admin: Admin, session: SessionDep,
                 form: Annotated[StaffForm, Form()]) -> Response:
    admin.actor.require(Permission.staff_manage)
    member = staff.get_staff(session, admin.actor, staff_id)
    values = form.values() | {"email": member.email}
    try:
        fields: dict[str, Any] = {"name": form.name, "role": form.role,
                                  "store_ids": form.store_ids, "active": form.active,
                                  "locale": form.locale or None}
        if form.password:
            fields["password"] = form.password
        data = StaffUpdate.model_validate(fields)
    except ValidationError as exc:
        return _staff_form(admin, session, member=member, values=values,
                           errors=field_errors(exc, STAFF_FIELD_ERRORS), status_code=422)
    try:
        staff.update_staff(session, admin.actor, member.id, data)
    except (CannotRemoveLastOwner, StoresRequired, StoreNotFound) as exc:
        return _staff_service_error(admin, session, exc, member=member, values=values)
    if member.id == admin.staff.id and member.active:
        # A new password ends every session of its owner; keep this one signed in.
        sign_in(admin.request, member)
    return redirect_done("/admin/staff", "staff_saved")


# --- API keys -------------------------------------------------------------------------------

class ApiKeyForm(BaseModel):
    name: str = ""
    scopes: list[str] = []
    store_id: str = ""

    def values(self) -> dict[str, Any]:
        return {"name": self.name, "scopes": self.scopes, "store_id": self.store_id}


def _api_key_form(admin: AdminContext, session: Session, *, values: dict[str, Any],
                  errors: dict[str, str] | None = None, status_code: int = 200) -> Response:
    return render(admin.request, "admin/api_key_form.html", admin.template_values(
        "api_keys", form=values, errors=errors or {}, scopes=list(SCOPE_LABELS),
        all_stores=stores.list_stores(session, admin.actor)), status_code=status_code)


@router.get("/api-keys")
def api_key_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    keys = apikeys.list_api_keys(session, admin.actor)
    store_names = {s.id: s.name for s in stores.list_stores(session, admin.actor)}
    return render(admin.request, "admin/api_keys.html", admin.template_values(
        "api_keys", keys=keys, store_names=store_names, flash=flash_message(done)))


@router.get("/api-keys/new")
def api_key_new(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.apikeys_manage)
    return _api_key_form(admin, session, values=ApiKeyForm().values())


@router.post("/api-keys/new", dependencies=[CsrfChecked])
def api_key_create(admin: Admin, session: SessionDep,
                   form: Annotated[ApiKeyForm, Form()]) -> Response:
    """Shows the secret on the response itself (not after a redirect): it is never stored,
    so it cannot be shown again, and a signed cookie is no place to carry it."""
    admin.actor.require(Permission.apikeys_manage)
    try:
        data = ApiKeyCreate.model_validate({"name": form.name, "scopes": form.scopes,
                                            "store_id": form.store_id or None})
    except ValidationError as exc:
        return _api_key_form(admin, session, values=form.values(),
                             errors=field_errors(exc, API_KEY_FIELD_ERRORS), status_code=422)
    try:
        key, secret = apikeys.create_api_key(session, admin.actor, data)
    except StoreNotFound as exc:
        message = refused(session, exc)
        return _api_key_form(admin, session, values=form.values(),
                             errors={"store_id": message}, status_code=exc.status)
    store = stores.get_store(session, admin.actor, key.store_id) if key.store_id else None
    return render(admin.request, "admin/api_key_created.html", admin.template_values(
        "api_keys", key=key, secret=secret, store=store), status_code=201)


@router.post("/api-keys/{key_id}/revoke", dependencies=[CsrfChecked])
def api_key_revoke(key_id: str, admin: Admin, session: SessionDep) -> Response:
    apikeys.revoke_api_key(session, admin.actor, key_id)
    return redirect_done("/admin/api-keys", "key_revoked")


# --- audit log ------------------------------------------------------------------------------

def _compact(value: Any, limit: int = 80) -> str:
    if value is None or value == "":
        text = "—"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _readable(key: str, value: Any, store_names: dict[str, str]) -> Any:
    """Store ids as store names, opening hours as `mon 07:30-21:00`; anything else as is."""
    if key == "store_id" and isinstance(value, str):
        return store_names.get(value, value)
    if key == "store_ids" and isinstance(value, list):
        return "、".join(store_names.get(v, str(v)) for v in value) or "—"
    if key == "opening_hours" and isinstance(value, dict):
        try:
            return "; ".join(f"{day} {format_day_ranges(value[day])}"
                             for day in WEEKDAYS if value.get(day)) or "—"
        except (KeyError, TypeError):  # not the shape this page knows: show it raw
            return value
    return value


def _details(entry: AuditEntry, store_names: dict[str, str]) -> list[tuple[str, str]]:
    """`field: value`, or `field: old → new` for the {field: [old, new]} of an update."""
    is_change = entry.action.endswith(".update")
    items = []
    for key, value in entry.details.items():
        if is_change and isinstance(value, list) and len(value) == 2:
            old, new = (_readable(key, v, store_names) for v in value)
            items.append((key, f"{_compact(old, 60)} → {_compact(new, 60)}"))
        else:
            items.append((key, _compact(_readable(key, value, store_names), 120)))
    return items


@router.get("/audit")
def audit_log(admin: Admin, session: SessionDep, before: datetime | None = None,
              before_id: str | None = None) -> Response:
    entries = audit.list_entries(session, admin.actor, limit=AUDIT_PAGE_SIZE + 1,
                                 before=as_utc(before) if before else None,
                                 before_id=before_id)
    older = None
    if len(entries) > AUDIT_PAGE_SIZE:
        entries = entries[:AUDIT_PAGE_SIZE]
        older = "/admin/audit?" + urlencode({"before": as_utc(entries[-1].at).isoformat(),
                                             "before_id": entries[-1].id})
    store_names = {s.id: s.name for s in stores.list_stores(session, admin.actor)}
    rows = [{"entry": e, "label": audit.action_label(e.action),
             "details": _details(e, store_names)} for e in entries]
    return render(admin.request, "admin/audit.html", admin.template_values(
        "audit", rows=rows, older=older, paged=before is not None))
