"""The API reference renders in a browser from local assets (no CDN), OpenAPI 3.1 included."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_api_docs_render_operations_offline(live_server: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    foreign_requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: foreign_requests.append(r.url)
                if not r.url.startswith(live_server) else None)
        page.goto(f"{live_server}/api/v1/docs")
        page.wait_for_selector("#operations-stores-stores-create", timeout=15000)
        assert page.locator("text=Unable to render this definition").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
        browser.close()
    assert foreign_requests == []
