"""Who is acting, for which tenant, and what they may do.

Every service function takes an `Actor`. Its tenant scopes every query; its permissions and
store list decide what it may touch. Staff get permissions from their role, API keys from
their scopes; both can be narrowed to some stores.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from omniloop.core.errors import N_, Forbidden, ScopeRequired
from omniloop.tenancy.models import ApiScope, Role

ROLE_LABELS: dict[Role, str] = {
    Role.owner: N_("Owner"),
    Role.marketer: N_("Marketer"),
    Role.store_manager: N_("Store manager"),
    Role.cashier: N_("Cashier"),
}

SCOPE_LABELS: dict[ApiScope, str] = {
    ApiScope.pos: N_("POS (store counter)"),
    ApiScope.ingest: N_("Ingest (events and orders)"),
    ApiScope.admin: N_("Admin (everything)"),
}


class Permission(enum.StrEnum):
    stores_read = "stores.read"
    stores_create = "stores.create"
    stores_update = "stores.update"
    staff_read = "staff.read"
    staff_manage = "staff.manage"
    apikeys_manage = "apikeys.manage"
    audit_read = "audit.read"
    catalog_read = "catalog.read"
    catalog_manage = "catalog.manage"
    customers_read = "customers.read"
    customers_write = "customers.write"
    customers_merge = "customers.merge"
    customers_erase = "customers.erase"
    campaigns_read = "campaigns.read"
    campaigns_manage = "campaigns.manage"
    pos_use = "pos.use"
    ingest = "ingest"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.owner: frozenset(Permission),
    Role.marketer: frozenset({
        Permission.stores_read, Permission.staff_read, Permission.catalog_read,
        Permission.catalog_manage, Permission.audit_read, Permission.customers_read,
        Permission.customers_write, Permission.customers_merge, Permission.campaigns_read,
        Permission.campaigns_manage,
    }),
    Role.store_manager: frozenset({
        Permission.stores_read, Permission.stores_update, Permission.staff_read,
        Permission.catalog_read, Permission.pos_use, Permission.customers_read,
        Permission.customers_write, Permission.campaigns_read,
    }),
    Role.cashier: frozenset({Permission.stores_read, Permission.catalog_read, Permission.pos_use,
                             Permission.customers_read, Permission.customers_write}),
}

SCOPE_PERMISSIONS: dict[ApiScope, frozenset[Permission]] = {
    ApiScope.admin: frozenset(Permission),
    ApiScope.pos: frozenset({Permission.stores_read, Permission.catalog_read, Permission.pos_use,
                             Permission.customers_read, Permission.customers_write}),
    ApiScope.ingest: frozenset({Permission.stores_read, Permission.catalog_read,
                                Permission.ingest, Permission.customers_read,
                                Permission.customers_write}),
}

# Which scope an API key needs for a permission, to name it in the error.
_SCOPE_FOR: dict[Permission, ApiScope] = {
    Permission.pos_use: ApiScope.pos,
    Permission.ingest: ApiScope.ingest,
}


@dataclass(frozen=True)
class Actor:
    tenant_id: str
    kind: Literal["staff", "api_key", "system"]
    id: str | None
    label: str
    permissions: frozenset[Permission]
    # None: every store of the tenant. A set: only these stores (cashiers, managers,
    # store-bound API keys).
    store_ids: frozenset[str] | None = None
    role: Role | None = None
    ip: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission in self.permissions:
            return
        if self.kind == "api_key":
            raise ScopeRequired(scope=_SCOPE_FOR.get(permission, ApiScope.admin).value)
        raise Forbidden()

    def sees_store(self, store_id: str) -> bool:
        return self.store_ids is None or store_id in self.store_ids


def system_actor(tenant_id: str, label: str = "system") -> Actor:
    """The actor for the CLI, the demo loader and scheduled jobs: full rights in one tenant."""
    return Actor(tenant_id=tenant_id, kind="system", id=None, label=label,
                 permissions=frozenset(Permission))


def staff_actor(tenant_id: str, staff_id: str, label: str, role: Role,
                store_ids: frozenset[str], ip: str | None = None) -> Actor:
    scoped = role in (Role.store_manager, Role.cashier)
    return Actor(tenant_id=tenant_id, kind="staff", id=staff_id, label=label,
                 permissions=ROLE_PERMISSIONS[role], role=role,
                 store_ids=store_ids if scoped else None, ip=ip)


def api_key_actor(tenant_id: str, key_id: str, label: str, scopes: list[str],
                  store_id: str | None, ip: str | None = None) -> Actor:
    permissions: frozenset[Permission] = frozenset()
    for scope in scopes:
        permissions |= SCOPE_PERMISSIONS[ApiScope(scope)]
    return Actor(tenant_id=tenant_id, kind="api_key", id=key_id, label=label,
                 permissions=permissions, scopes=frozenset(scopes),
                 store_ids=frozenset({store_id}) if store_id else None, ip=ip)
