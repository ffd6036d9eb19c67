"""Request and response bodies of the catalogue.

Prices travel as integer minor units of the brand's currency (`price_minor`; NT$120 is
12000), never as floats; responses name the currency beside them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from omniloop.catalog.models import Product
from omniloop.core.schemas import RequestModel, ResponseModel

# The column is a 32-bit INTEGER on PostgreSQL; NT$20,000,000 is far above any real price.
MAX_PRICE_MINOR = 2_000_000_000

Sku = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                       pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
ProductName = Annotated[str, StringConstraints(min_length=1, max_length=160)]
Category = Annotated[str, StringConstraints(max_length=80)]
PriceMinor = Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR, strict=True,
                                  description="Price in minor units of the brand's currency "
                                              "(TWD: NT$120 → 12000).",
                                  examples=[12000])]


class ProductCreate(RequestModel):
    sku: Sku = Field(description="The brand's own code for the product, as the POS knows it; "
                                 "unique per brand.", examples=["CF-LATTE"])
    name: ProductName = Field(examples=["拿鐵"])
    category: Category = Field(default="", examples=["咖啡"])
    price_minor: PriceMinor
    active: bool = True


class ProductUpdate(RequestModel):
    """Partial update: only the fields sent change; none of them may be null."""

    sku: Sku | None = None
    name: ProductName | None = None
    category: Category | None = None
    price_minor: PriceMinor | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class ProductOut(ResponseModel):
    id: str
    sku: str
    name: str
    category: str
    price_minor: int
    currency: str = Field(description="ISO 4217 code of the brand's currency.",
                          examples=["TWD"])
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: Product, currency: str) -> ProductOut:
        return cls(id=product.id, sku=product.sku, name=product.name,
                   category=product.category, price_minor=product.price_minor,
                   currency=currency, active=product.active, created_at=product.created_at,
                   updated_at=product.updated_at)
