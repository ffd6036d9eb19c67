"""Errors of the catalogue module."""

from __future__ import annotations

from omniloop.core.errors import N_, Conflict, NotFound


class ProductNotFound(NotFound):
    code = "product_not_found"
    message = N_("Product not found.")


class SkuTaken(Conflict):
    code = "sku_taken"
    message = N_("Another product already uses the SKU '{sku}'.")
