"""The catalogue's rules, called directly as the CLI, jobs and routes call them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from omniloop.catalog import service
from omniloop.catalog.errors import ProductNotFound, SkuTaken
from omniloop.catalog.models import Product
from omniloop.catalog.schemas import ProductCreate, ProductUpdate
from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.core.errors import Forbidden, ScopeRequired
from omniloop.tenancy.access import api_key_actor, staff_actor, system_actor
from omniloop.tenancy.models import AuditEntry, Role
from tests.catalog.factories import make_product
from tests.tenancy.factories import make_tenant


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                .order_by(AuditEntry.at)))


def test_create_then_get_and_audit(session: Session) -> None:
    tenant = make_tenant(session)
    actor = system_actor(tenant.id, "tester")
    product = service.create_product(session, actor, ProductCreate(
        sku="CF-LATTE", name=" 拿鐵 ", category="咖啡", price_minor=13000))
    session.commit()

    fetched = service.get_product(session, actor, product.id)
    assert (fetched.sku, fetched.name, fetched.category, fetched.price_minor, fetched.active) == (
        "CF-LATTE", "拿鐵", "咖啡", 13000, True)
    [entry] = _audit(session, "product.create")
    assert entry.entity_id == product.id
    assert entry.actor_label == "tester"
    assert entry.details["price_minor"] == 13000


def test_list_orders_by_category_then_sku_and_filters(session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "B", name="提拉米蘇", category="甜點", price_minor=14000)
    make_product(session, tenant, "A2", name="拿鐵", category="咖啡")
    make_product(session, tenant, "A1", name="美式", category="咖啡", active=False)
    make_product(session, make_tenant(session), "OTHER", category="咖啡")
    actor = system_actor(tenant.id)

    everything = service.list_products(session, actor)
    assert [p.sku for p in everything] == ["A1", "A2", "B"]  # 咖啡 < 甜點 by code point
    assert [p.sku for p in service.list_products(session, actor, category="甜點")] == ["B"]
    assert {p.sku for p in service.list_products(session, actor, active=True)} == {"A2", "B"}
    assert [p.sku for p in service.list_products(session, actor, category="咖啡",
                                                 active=False)] == ["A1"]
    assert service.list_categories(session, actor) == sorted(["咖啡", "甜點"])


def test_duplicate_sku_in_one_brand_is_refused_but_other_brands_may_reuse_it(
        session: Session) -> None:
    tenant, other = make_tenant(session), make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    with pytest.raises(SkuTaken) as raised:
        service.create_product(session, system_actor(tenant.id), ProductCreate(
            sku="CF-LATTE", name="Latte again", price_minor=1))
    assert raised.value.code == "sku_taken"
    assert raised.value.status == 409
    session.rollback()
    make_product(session, other, "CF-LATTE")
    assert session.scalar(select(func.count()).select_from(Product)) == 2


def test_update_changes_only_sent_fields_and_audits_the_difference(session: Session) -> None:
    tenant = make_tenant(session)
    product = make_product(session, tenant, "CF-LATTE", price_minor=13000)
    actor = system_actor(tenant.id)

    service.update_product(session, actor, product.id, ProductUpdate(price_minor=14000,
                                                                     active=False))
    session.commit()
    session.refresh(product)
    assert (product.name, product.price_minor, product.active) == ("拿鐵", 14000, False)
    [entry] = _audit(session, "product.update")
    assert entry.details == {"price_minor": [13000, 14000], "active": [True, False]}

    service.update_product(session, actor, product.id, ProductUpdate(price_minor=14000))
    session.commit()
    assert len(_audit(session, "product.update")) == 1, "a no-op update is not audited"


def test_update_to_a_sku_in_use_is_refused(session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant, "CF-LATTE")
    mocha = make_product(session, tenant, "CF-MOCHA")
    with pytest.raises(SkuTaken):
        service.update_product(session, system_actor(tenant.id), mocha.id,
                               ProductUpdate(sku="CF-LATTE"))
    session.rollback()
    renamed = service.update_product(session, system_actor(tenant.id), mocha.id,
                                     ProductUpdate(sku="CF-MOCHA-L"))
    assert renamed.sku == "CF-MOCHA-L"


def test_another_brands_product_is_not_found(session: Session) -> None:
    tenant, other = make_tenant(session), make_tenant(session)
    foreign = make_product(session, other)
    actor = system_actor(tenant.id)
    with pytest.raises(ProductNotFound):
        service.get_product(session, actor, foreign.id)
    with pytest.raises(ProductNotFound):
        service.update_product(session, actor, foreign.id, ProductUpdate(price_minor=1))
    session.rollback()
    session.refresh(foreign)
    assert foreign.price_minor == 13000


@pytest.mark.parametrize(("role", "may_manage"), [
    (Role.owner, True), (Role.marketer, True), (Role.store_manager, False),
    (Role.cashier, False),
])
def test_everyone_reads_only_owners_and_marketers_manage(session: Session, role: Role,
                                                         may_manage: bool) -> None:
    tenant = make_tenant(session)
    product = make_product(session, tenant)
    actor = staff_actor(tenant.id, "staff-id", "someone", role, frozenset({"store"}))
    assert [p.id for p in service.list_products(session, actor)] == [product.id]
    change = ProductUpdate(name="改名")
    if may_manage:
        service.update_product(session, actor, product.id, change)
    else:
        with pytest.raises(Forbidden):
            service.update_product(session, actor, product.id, change)
        with pytest.raises(Forbidden):
            service.create_product(session, actor, ProductCreate(sku="X", name="x",
                                                                 price_minor=1))


def test_pos_key_may_read_but_not_manage(session: Session) -> None:
    tenant = make_tenant(session)
    make_product(session, tenant)
    actor = api_key_actor(tenant.id, "key", "POS", ["pos"], None)
    assert len(service.list_products(session, actor)) == 1
    with pytest.raises(ScopeRequired) as raised:
        service.create_product(session, actor, ProductCreate(sku="X", name="x", price_minor=1))
    assert raised.value.params == {"scope": "admin"}


def test_upsert_creates_then_updates_then_changes_nothing(session: Session) -> None:
    tenant = make_tenant(session)
    actor = system_actor(tenant.id, "importer")
    row = ProductCreate(sku="BN-HOUSE", name="招牌綜合豆", category="咖啡豆", price_minor=38000)

    product, created = service.upsert_product(session, actor, row)
    session.commit()
    assert created

    changed = row.model_copy(update={"price_minor": 40000, "name": "招牌綜合豆 半磅"})
    again, created = service.upsert_product(session, actor, changed)
    session.commit()
    assert (again.id, created, again.price_minor, again.name) == (
        product.id, False, 40000, "招牌綜合豆 半磅")

    audit_before = session.scalar(select(func.count()).select_from(AuditEntry))
    session.refresh(again)
    updated_at = as_utc(again.updated_at)
    _, created = service.upsert_product(session, actor, changed)
    session.commit()
    session.refresh(again)
    assert not created
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == audit_before
    assert as_utc(again.updated_at) == updated_at
    assert session.scalar(select(func.count()).select_from(Product)) == 1


@pytest.mark.parametrize("body", [
    {"sku": "A", "name": "x", "price_minor": -1},
    {"sku": "A", "name": "x", "price_minor": 120.5},
    {"sku": "A", "name": "x", "price_minor": "12000"},
    {"sku": "A", "name": "x", "price_minor": 2_000_000_001},
    {"sku": "has space", "name": "x", "price_minor": 1},
    {"sku": "", "name": "x", "price_minor": 1},
    {"sku": "A", "name": "   ", "price_minor": 1},
    {"sku": "A", "name": "x", "price_minor": 1, "colour": "red"},
])
def test_create_body_rejects_bad_values(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProductCreate.model_validate(body)


def test_update_body_rejects_nulls() -> None:
    with pytest.raises(ValidationError, match="name cannot be null"):
        ProductUpdate.model_validate({"name": None})
    assert ProductUpdate.model_validate({}).model_dump(exclude_unset=True) == {}
