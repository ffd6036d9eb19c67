"""Admin pages for the product catalogue: the list by category, create and edit forms.

Everyone who signs in may see the catalogue; owners and marketers may change it (the
`catalog.manage` permission). Prices are typed and shown in major units (NT$120) and stored
in minor units through `omniloop.core.money`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from itertools import groupby
from typing import Annotated, Any

from fastapi import APIRouter, Form, status
from fastapi.responses import Response
from pydantic import ValidationError

from omniloop.api.deps import SessionDep
from omniloop.catalog import service
from omniloop.catalog.errors import SkuTaken
from omniloop.catalog.models import Product
from omniloop.catalog.schemas import MAX_PRICE_MINOR, ProductCreate, ProductUpdate
from omniloop.core.clock import as_utc
from omniloop.core.errors import N_
from omniloop.core.i18n import gettext
from omniloop.core.money import minor_digits, to_major, to_minor
from omniloop.tenancy import audit
from omniloop.tenancy.access import Permission
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
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
register_flash("product_saved", N_("Product saved."))
audit.register_action("product.create", N_("Product created"))
audit.register_action("product.update", N_("Product changed"))

register(NavItem("products", N_("Products"), "/admin/products", Permission.catalog_read, 15))

FIELD_ERRORS: dict[str, str] = {
    "sku": N_("Enter a SKU of up to 64 letters, digits, '-', '_', '.' or '/', "
              "starting with a letter or digit."),
    "name": N_("Enter a name of up to 160 characters."),
    "category": N_("A category has at most 80 characters."),
    "price": N_("Enter a price of zero or more, like 120 or 120.50."),
}

FormText = Annotated[str, Form()]
FormCheck = Annotated[str | None, Form()]


def _price_text(minor: int, currency: str) -> str:
    major = to_major(minor, currency)
    if major == major.to_integral_value():
        return str(int(major))
    return format(major.normalize(), "f")


def _parse_price(text: str, currency: str) -> int | None:
    """'120', '1,200', 'NT$120.50' → minor units; None when it is not a valid price."""
    cleaned = text.strip().replace(",", "").replace("NT$", "").replace("$", "").strip()
    try:
        major = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not major.is_finite() or major < 0:
        return None
    exponent = major.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > minor_digits(currency):
        return None
    minor = to_minor(major, currency)
    return minor if minor <= MAX_PRICE_MINOR else None


def _form_values(sku: str, name: str, category: str, price: str, active: bool) -> dict[str, Any]:
    return {"sku": sku, "name": name, "category": category, "price": price, "active": active}


def _validate(values: dict[str, Any], currency: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's fields as a product body, and a translated message per invalid field."""
    errors: dict[str, str] = {}
    price_minor = _parse_price(values["price"], currency)
    if price_minor is None:
        price_message = FIELD_ERRORS["price"]
        errors["price"] = gettext(price_message)
    body = {"sku": values["sku"], "name": values["name"], "category": values["category"],
            "price_minor": price_minor if price_minor is not None else 0,
            "active": values["active"]}
    try:
        ProductCreate.model_validate(body)
    except ValidationError as exc:
        found = field_errors(exc, FIELD_ERRORS, fallback=FIELD_ERRORS["name"],
                             model_field="name")
        errors = found | errors  # the price message from parsing comes first
    return body, errors


def _form_page(admin: AdminContext, session: SessionDep, *, values: dict[str, Any],
               errors: dict[str, str], product: Product | None,
               status_code: int = status.HTTP_200_OK) -> Response:
    return render(admin.request, "admin/products_form.html", admin.template_values(
        "products", values=values, errors=errors, product=product,
        categories=service.list_categories(session, admin.actor)), status_code=status_code)


def _reject(admin: AdminContext, session: SessionDep, values: dict[str, Any],
            product: Product | None, error: SkuTaken) -> Response:
    message = refused(session, error)
    return _form_page(admin, session, values=values, errors={"sku": message}, product=product,
                      status_code=error.status)


@router.get("/products")
def product_list(admin: Admin, session: SessionDep, done: str | None = None) -> Response:
    products = service.list_products(session, admin.actor)
    groups = [(category, list(items))
              for category, items in groupby(products, key=lambda p: p.category)]
    # Categories in the order the brand set them up (its menu order), not by code point.
    groups.sort(key=lambda group: (min(as_utc(p.created_at) for p in group[1]), group[0]))
    return render(admin.request, "admin/products.html", admin.template_values(
        "products", groups=groups, total=len(products),
        active_count=sum(1 for p in products if p.active),
        can_manage=admin.actor.can(Permission.catalog_manage), flash=flash_message(done)))


@router.get("/products/new")
def new_product(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.catalog_manage)
    return _form_page(admin, session, values=_form_values("", "", "", "", True), errors={},
                      product=None)


@router.post("/products/new", dependencies=[CsrfChecked])
def create_product(admin: Admin, session: SessionDep, sku: FormText = "", name: FormText = "",
                   category: FormText = "", price: FormText = "",
                   active: FormCheck = None) -> Response:
    admin.actor.require(Permission.catalog_manage)
    values = _form_values(sku.strip(), name.strip(), category.strip(), price.strip(),
                          active is not None)
    body, errors = _validate(values, admin.tenant.currency)
    if errors:
        return _form_page(admin, session, values=values, errors=errors, product=None,
                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        service.create_product(session, admin.actor, ProductCreate.model_validate(body))
    except SkuTaken as exc:
        return _reject(admin, session, values, None, exc)
    return redirect_done("/admin/products", "product_saved")


@router.get("/products/{product_id}/edit")
def edit_product(product_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.catalog_manage)
    product = service.get_product(session, admin.actor, product_id)
    values = _form_values(product.sku, product.name, product.category,
                          _price_text(product.price_minor, admin.tenant.currency),
                          product.active)
    return _form_page(admin, session, values=values, errors={}, product=product)


@router.post("/products/{product_id}/edit", dependencies=[CsrfChecked])
def update_product(product_id: str, admin: Admin, session: SessionDep, sku: FormText = "",
                   name: FormText = "", category: FormText = "", price: FormText = "",
                   active: FormCheck = None) -> Response:
    admin.actor.require(Permission.catalog_manage)
    product = service.get_product(session, admin.actor, product_id)
    values = _form_values(sku.strip(), name.strip(), category.strip(), price.strip(),
                          active is not None)
    body, errors = _validate(values, admin.tenant.currency)
    if errors:
        return _form_page(admin, session, values=values, errors=errors, product=product,
                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        service.update_product(session, admin.actor, product.id,
                               ProductUpdate.model_validate(body))
    except SkuTaken as exc:
        return _reject(admin, session, values, product, exc)
    return redirect_done("/admin/products", "product_saved")
