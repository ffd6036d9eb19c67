"""The catalogue's rules: listing, reading, creating and changing products.

Products belong to the brand, not to a store: every store sells from the same list. SKUs are
the brand's own product codes, unique per brand and matched exactly (case matters), because
order lines from POS and e-commerce exports reference products by SKU.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omniloop.catalog.errors import ProductNotFound, SkuTaken
from omniloop.catalog.models import Product
from omniloop.catalog.schemas import ProductCreate, ProductUpdate
from omniloop.core.db import Session
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

_AUDITED = ("sku", "name", "category", "price_minor", "active")


def _snapshot(product: Product) -> dict[str, Any]:
    return {field: getattr(product, field) for field in _AUDITED}


def list_products(session: Session, actor: Actor, *, category: str | None = None,
                  active: bool | None = None) -> list[Product]:
    """Products ordered by category, then SKU; optionally one category or one state.

    SKU rather than name: code-point order of Chinese names means nothing to a reader, while
    SKUs are usually built to sort (CF-…, TEA-…).
    """
    actor.require(Permission.catalog_read)
    query = select(Product).where(Product.tenant_id == actor.tenant_id)
    if category is not None:
        query = query.where(Product.category == category.strip())
    if active is not None:
        query = query.where(Product.active.is_(active))
    return list(session.scalars(query.order_by(Product.category, Product.sku)))


def list_categories(session: Session, actor: Actor) -> list[str]:
    """The categories in use, for filters and the form's suggestions."""
    actor.require(Permission.catalog_read)
    return list(session.scalars(
        select(Product.category).where(Product.tenant_id == actor.tenant_id,
                                       Product.category != "")
        .distinct().order_by(Product.category)))


def get_product(session: Session, actor: Actor, product_id: str) -> Product:
    """A product of the actor's brand; another brand's id is 'not found'."""
    actor.require(Permission.catalog_read)
    product = session.get(Product, (actor.tenant_id, product_id))
    if product is None:
        raise ProductNotFound()
    return product


def find_product_by_sku(session: Session, actor: Actor, sku: str) -> Product | None:
    actor.require(Permission.catalog_read)
    return session.scalar(select(Product).where(Product.tenant_id == actor.tenant_id,
                                                Product.sku == sku.strip()))


def _sku_in_use(session: Session, tenant_id: str, sku: str, other_than: str | None) -> bool:
    query = select(Product.id).where(Product.tenant_id == tenant_id, Product.sku == sku)
    if other_than is not None:
        query = query.where(Product.id != other_than)
    return session.scalar(query) is not None


def create_product(session: Session, actor: Actor, data: ProductCreate) -> Product:
    actor.require(Permission.catalog_manage)
    if _sku_in_use(session, actor.tenant_id, data.sku, None):
        raise SkuTaken(sku=data.sku)
    product = Product(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(product)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the SKU between the check and here
        raise SkuTaken(sku=data.sku) from None
    audit.record(session, actor, "product.create", "product", product.id, _snapshot(product))
    return product


def _apply(session: Session, actor: Actor, product: Product, updates: dict[str, Any]) -> bool:
    """Set the fields that differ; audit them. True when something changed."""
    before = _snapshot(product)
    sku = updates.get("sku")
    if sku is not None and sku != product.sku and _sku_in_use(session, actor.tenant_id, sku,
                                                               product.id):
        raise SkuTaken(sku=sku)
    for field, value in updates.items():
        if getattr(product, field) != value:
            setattr(product, field, value)
    diff = audit.changes(before, _snapshot(product))
    if not diff:
        return False
    try:
        session.flush()
    except IntegrityError:
        raise SkuTaken(sku=product.sku) from None
    audit.record(session, actor, "product.update", "product", product.id, diff)
    return True


def update_product(session: Session, actor: Actor, product_id: str,
                   data: ProductUpdate) -> Product:
    actor.require(Permission.catalog_manage)
    product = get_product(session, actor, product_id)
    _apply(session, actor, product, data.model_dump(exclude_unset=True))
    return product


def upsert_product(session: Session, actor: Actor, data: ProductCreate) -> tuple[Product, bool]:
    """Create the product with this SKU or bring the existing one in line with `data`.

    For importers (POS exports, e-commerce feeds): running the same import twice changes
    nothing the second time and writes no audit entries. Returns (product, created).
    """
    actor.require(Permission.catalog_manage)
    existing = find_product_by_sku(session, actor, data.sku)
    if existing is None:
        return create_product(session, actor, data), True
    _apply(session, actor, existing, data.model_dump(exclude={"sku"}))
    return existing, False
