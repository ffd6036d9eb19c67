"""HTTP API of the product catalogue. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from omniloop.api.deps import ApiActor, SessionDep
from omniloop.catalog import service
from omniloop.catalog.schemas import ProductCreate, ProductOut, ProductUpdate
from omniloop.tenancy.tenants import get_tenant

router = APIRouter(tags=["products"])


def _currency(session: SessionDep, tenant_id: str) -> str:
    return get_tenant(session, tenant_id).currency


@router.get("/products", name="list", summary="List products", response_model=list[ProductOut])
def list_products(
    actor: ApiActor,
    session: SessionDep,
    category: str | None = Query(default=None, max_length=80, description="Only this category."),
    active: bool | None = Query(
        default=None, description="Only active (true) or inactive (false) products."
    ),
) -> list[ProductOut]:
    """The brand's products, ordered by category and SKU. Any scope may read them."""
    currency = _currency(session, actor.tenant_id)
    return [
        ProductOut.of(p, currency)
        for p in service.list_products(session, actor, category=category, active=active)
    ]


@router.post(
    "/products",
    name="create",
    summary="Create a product",
    response_model=ProductOut,
    status_code=status.HTTP_201_CREATED,
)
def create_product(body: ProductCreate, actor: ApiActor, session: SessionDep) -> ProductOut:
    """Add a product. Needs the `admin` scope; a SKU already in use answers 409 `sku_taken`.

    `price_minor` is in minor units of the brand's currency: NT$120 is `12000`.
    """
    product = service.create_product(session, actor, body)
    return ProductOut.of(product, _currency(session, actor.tenant_id))


@router.get(
    "/products/{product_id}", name="get", summary="Get a product", response_model=ProductOut
)
def get_product(product_id: str, actor: ApiActor, session: SessionDep) -> ProductOut:
    """One product of the brand; any other id answers 404 `product_not_found`."""
    product = service.get_product(session, actor, product_id)
    return ProductOut.of(product, _currency(session, actor.tenant_id))


@router.patch(
    "/products/{product_id}", name="update", summary="Update a product", response_model=ProductOut
)
def update_product(
    product_id: str, body: ProductUpdate, actor: ApiActor, session: SessionDep
) -> ProductOut:
    """Change some fields of a product (needs `admin`); fields not sent keep their value.

    Deactivate a product with `{"active": false}` rather than deleting it: past orders
    still reference its SKU.
    """
    product = service.update_product(session, actor, product_id, body)
    return ProductOut.of(product, _currency(session, actor.tenant_id))
