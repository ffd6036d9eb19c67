"""HTTP API of the tenancy module. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, status

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.tenancy import apikeys, audit, staff, stores, tenants
from omniloop.tenancy.models import StaffUser
from omniloop.tenancy.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditEntryOut,
    StaffCreate,
    StaffOut,
    StaffUpdate,
    StoreCreate,
    StoreOut,
    StoreUpdate,
    TenantOut,
    WhoAmI,
)

router = APIRouter()


def _staff_out(member: StaffUser, store_ids: list[str]) -> StaffOut:
    return StaffOut.model_validate(member).model_copy(update={"store_ids": store_ids})


@router.get(
    "/me",
    tags=["auth"],
    name="whoami",
    summary="Who am I (brand and scopes of this key)",
    response_model=WhoAmI,
)
def whoami(actor: ApiActor, session: SessionDep) -> WhoAmI:
    """The brand and permissions of the API key making the call."""
    tenant = tenants.get_tenant(session, actor.tenant_id)
    return WhoAmI(
        tenant=TenantOut.model_validate(tenant),
        actor_type=actor.kind,
        label=actor.label,
        scopes=sorted(actor.scopes),
        store_ids=sorted(actor.store_ids) if actor.store_ids is not None else None,
    )


@router.get(
    "/stores", tags=["stores"], name="list", summary="List stores", response_model=list[StoreOut]
)
def list_stores(
    actor: ApiActor, session: SessionDep, include_inactive: bool = True
) -> list[StoreOut]:
    """Stores of the brand; a store-bound key sees only its store."""
    return [
        StoreOut.model_validate(s)
        for s in stores.list_stores(session, actor, include_inactive=include_inactive)
    ]


@router.post(
    "/stores",
    tags=["stores"],
    name="create",
    summary="Create a store",
    response_model=StoreOut,
    status_code=status.HTTP_201_CREATED,
)
def create_store(body: StoreCreate, actor: ApiActor, session: SessionDep) -> StoreOut:
    """Create a store. Needs the `admin` scope. Codes are unique per brand (upper-cased)."""
    return StoreOut.model_validate(stores.create_store(session, actor, body))


@router.get(
    "/stores/{store_id}",
    tags=["stores"],
    name="get",
    summary="Get a store",
    response_model=StoreOut,
)
def get_store(store_id: str, actor: ApiActor, session: SessionDep) -> StoreOut:
    return StoreOut.model_validate(stores.get_store(session, actor, store_id))


@router.patch(
    "/stores/{store_id}",
    tags=["stores"],
    name="update",
    summary="Update a store",
    response_model=StoreOut,
)
def update_store(
    store_id: str, body: StoreUpdate, actor: ApiActor, session: SessionDep
) -> StoreOut:
    """Change some fields of a store; fields not sent keep their value."""
    return StoreOut.model_validate(stores.update_store(session, actor, store_id, body))


@router.get(
    "/staff", tags=["staff"], name="list", summary="List staff", response_model=list[StaffOut]
)
def list_staff(actor: ApiActor, session: SessionDep) -> list[StaffOut]:
    by_staff = staff.store_ids_by_staff(session, actor.tenant_id)
    return [_staff_out(m, by_staff.get(m.id, [])) for m in staff.list_staff(session, actor)]


@router.post(
    "/staff",
    tags=["staff"],
    name="create",
    summary="Create a staff account",
    response_model=StaffOut,
    status_code=status.HTTP_201_CREATED,
)
def create_staff(body: StaffCreate, actor: ApiActor, session: SessionDep) -> StaffOut:
    """Create a staff account. Store managers and cashiers need at least one store."""
    member = staff.create_staff(session, actor, body)
    return _staff_out(member, staff.store_ids_of(session, actor.tenant_id, member.id))


@router.get(
    "/staff/{staff_id}",
    tags=["staff"],
    name="get",
    summary="Get a staff member",
    response_model=StaffOut,
)
def get_staff(staff_id: str, actor: ApiActor, session: SessionDep) -> StaffOut:
    member = staff.get_staff(session, actor, staff_id)
    return _staff_out(member, staff.store_ids_of(session, actor.tenant_id, member.id))


@router.patch(
    "/staff/{staff_id}",
    tags=["staff"],
    name="update",
    summary="Update a staff member",
    response_model=StaffOut,
)
def update_staff(
    staff_id: str, body: StaffUpdate, actor: ApiActor, session: SessionDep
) -> StaffOut:
    """Change role, stores, name, language or password; deactivating ends their sessions."""
    member = staff.update_staff(session, actor, staff_id, body)
    return _staff_out(member, staff.store_ids_of(session, actor.tenant_id, member.id))


@router.get(
    "/api-keys",
    tags=["api-keys"],
    name="list",
    summary="List API keys",
    response_model=list[ApiKeyOut],
)
def list_api_keys(actor: ApiActor, session: SessionDep) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in apikeys.list_api_keys(session, actor)]


@router.post(
    "/api-keys",
    tags=["api-keys"],
    name="create",
    summary="Create an API key",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
)
def create_api_key(body: ApiKeyCreate, actor: ApiActor, session: SessionDep) -> ApiKeyCreated:
    """Create a key. The `key` field of the answer is the only time the secret is shown."""
    key, secret = apikeys.create_api_key(session, actor, body)
    return ApiKeyCreated.model_validate(
        {**ApiKeyOut.model_validate(key).model_dump(), "key": secret}
    )


@router.post(
    "/api-keys/{key_id}/revoke",
    tags=["api-keys"],
    name="revoke",
    summary="Revoke an API key",
    response_model=ApiKeyOut,
)
def revoke_api_key(key_id: str, actor: ApiActor, session: SessionDep) -> ApiKeyOut:
    """Revoke a key at once; calls with it then answer 401 `api_key_revoked`."""
    return ApiKeyOut.model_validate(apikeys.revoke_api_key(session, actor, key_id))


@router.get(
    "/audit-log",
    tags=["audit"],
    name="list",
    summary="Read the audit log",
    response_model=list[AuditEntryOut],
)
def list_audit_log(
    actor: ApiActor,
    session: SessionDep,
    limit: int = Query(default=100, ge=1, le=500),
    before: datetime | None = None,
    before_id: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> list[AuditEntryOut]:
    """Who changed what and when, newest first.

    For the next page pass the last entry's `at` as `before` and its `id` as `before_id`.
    """
    entries = audit.list_entries(
        session,
        actor,
        limit=limit,
        before=before,
        before_id=before_id,
        entity_type=entity_type,
        entity_id=entity_id,
    )
    return [AuditEntryOut.model_validate(e) for e in entries]
