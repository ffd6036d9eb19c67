"""Signing in to the admin through the real login form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from httpx2 import Response

from tests.tenancy.factories import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD, brand: str = "",
          next_path: str = "/admin") -> Response:
    page = client.get("/admin/login")
    return client.post("/admin/login", data={
        "csrf_token": csrf_from(page.text), "email": email, "password": password,
        "brand": brand, "next": next_path}, follow_redirects=False)
