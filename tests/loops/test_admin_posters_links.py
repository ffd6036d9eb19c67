"""Admin pages, printable posters (the QR decodes after rasterising) and short links."""

from __future__ import annotations

import pypdfium2 as pdfium
import zxingcpp
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.models import Event
from omniloop.loops import links as links_service
from omniloop.loops.links import is_bot, with_utm
from omniloop.loops.models import Placement, Purpose, ShortLink, Touchpoint
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.loops.factories import flush, make_shop
from tests.tenancy.factories import fresh, make_staff
from tests.web.admin_helpers import csrf_from, login

CHROME = ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0 Mobile Safari/537.36")


def decode_pdf_pages(data: bytes) -> list[str]:
    """Rasterise every page (grey, 150 dpi) and read its one QR code with zxing-cpp."""
    found = []
    pdf = pdfium.PdfDocument(data)
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            bitmap = page.render(scale=150 / 72, grayscale=True)
            width, height, stride = bitmap.width, bitmap.height, bitmap.stride
            raw = bytes(bitmap.buffer)
            rows = b"".join(raw[y * stride:y * stride + width] for y in range(height))
            results = zxingcpp.read_barcodes(memoryview(rows).cast("B", (height, width)))
            assert len(results) == 1, f"page {index}: {len(results)} codes"
            found.append(results[0].text)
            bitmap.close()
            page.close()
    finally:
        pdf.close()
    return found


def test_touchpoints_admin_and_table_posters(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    form = client.get("/admin/loops/touchpoints/new")
    assert form.status_code == 200
    made = client.post("/admin/loops/touchpoints/new", data={
        "csrf_token": csrf_from(form.text), "store_id": shop.store.id, "placement": "table",
        "purpose": "membership", "number": "1", "tables_to": "3", "reward_points": "20",
        "enabled": "on"}, follow_redirects=False)
    assert made.status_code == 303, made.text
    bad = client.post("/admin/loops/touchpoints/new", data={
        "csrf_token": csrf_from(form.text), "store_id": shop.store.id, "placement": "counter",
        "purpose": "review", "target_url": "not a url"})
    assert bad.status_code == 422
    assert "https://" in bad.text
    fresh(session)
    tables = list(session.scalars(select(Touchpoint).order_by(Touchpoint.number)))
    assert [t.number for t in tables] == [1, 2, 3]
    assert all(t.placement == Placement.table for t in tables)
    listing = client.get("/admin/loops/touchpoints")
    assert all(t.code in listing.text for t in tables)
    for size in ("a6", "a4"):
        pdf = client.get(f"/admin/loops/stores/{shop.store.id}/tables.pdf?size={size}")
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert decode_pdf_pages(pdf.content) == [f"http://testserver/t/{t.code}"
                                                 for t in tables]
    english = client.get(f"/admin/loops/touchpoints/{tables[0].id}/poster.pdf?lang=en")
    assert decode_pdf_pages(english.content) == [f"http://testserver/t/{tables[0].code}"]
    for page in ("feedback", "referrals", "links", "report"):
        assert client.get(f"/admin/loops/{page}").status_code == 200, page


def test_short_links_count_people_not_bots_and_keep_utm(client: TestClient,
                                                       session: Session) -> None:
    shop = make_shop(session)
    fresh(session)
    link = links_service.create_link(session, system_actor(shop.tenant.id), name="IG",
                                     target_url="https://shop.example/spring?x=1",
                                     utm_source="instagram", utm_medium="social")
    session.commit()
    answer = client.get(f"/r/{link.code}?utm_campaign=spring", headers={"User-Agent": CHROME},
                        follow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith("https://shop.example/spring?x=1&")
    assert "utm_source=instagram" in location
    assert "utm_campaign=spring" in location
    for agent in ("facebookexternalhit/1.1", "Mozilla/5.0 (compatible; Googlebot/2.1)",
                  "Slackbot-LinkExpanding 1.0", ""):
        assert client.get(f"/r/{link.code}", headers={"User-Agent": agent},
                          follow_redirects=False).status_code == 302
    flush()
    fresh(session)
    stored = session.get(ShortLink, (shop.tenant.id, link.id))
    assert stored is not None
    assert (stored.clicks, stored.bot_clicks) == (1, 4)
    (click,) = session.scalars(select(Event).where(Event.type == "link_click"))
    assert click.properties["utm_campaign"] == "spring"
    assert click.properties["utm_source"] == "instagram"
    assert not is_bot(CHROME)
    assert is_bot("LINE-Poker/1.0")
    assert is_bot(None)
    assert with_utm("https://a.example/?utm_source=keep", (("utm_source", "x"),)) == (
        "https://a.example/?utm_source=keep")
    # Disabled from the admin: the link answers the friendly 404 at once.
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    page = client.get("/admin/loops/links")
    assert link.code in page.text
    off = client.post(f"/admin/loops/links/{link.id}/enabled",
                      data={"csrf_token": csrf_from(page.text), "enabled": "0"},
                      follow_redirects=False)
    assert off.status_code == 303
    assert client.get(f"/r/{link.code}", headers={"User-Agent": CHROME}).status_code == 404


def test_purposes_redirect_or_explain(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    from tests.loops.factories import make_touchpoint

    url_tp = make_touchpoint(session, shop, Purpose.url, target_url="https://x.example/menu")
    claim_tp = make_touchpoint(session, shop, Purpose.claim, campaign_id=shop.welcome.id)
    review_tp = make_touchpoint(session, shop, Purpose.review,
                                target_url="https://maps.example/review")
    assert client.get(f"/t/{url_tp.code}", follow_redirects=False).headers[
        "location"] == "https://x.example/menu"
    claim = client.get(f"/t/{claim_tp.code}", follow_redirects=False).headers["location"]
    assert f"/claim/{shop.welcome.id}" in claim
    assert "channel=qr" in claim
    assert client.get(f"/t/{review_tp.code}").status_code == 200
    go = client.get(f"/t/{review_tp.code}/go", follow_redirects=False)
    assert go.headers["location"] == "https://maps.example/review"
    flush()
    fresh(session)
    types = sorted(e.type for e in session.scalars(select(Event)))
    assert types == ["qr_scan", "qr_scan", "qr_scan", "review_clicked"]


def test_a_refused_hit_does_not_block_the_others(session: Session) -> None:
    from omniloop.loops.recorder import Hit, Recorder

    shop = make_shop(session)
    recorder = Recorder()
    good = Hit(tenant_id=shop.tenant.id, type="qr_scan", source="touchpoint",
               store_id=shop.store.id, device_id="device-000000000001", properties={})
    orphan = Hit(tenant_id="01ZZZZZZZZZZZZZZZZZZZZZZZZ", type="qr_scan", source="touchpoint",
                 store_id=None, device_id=None, properties={})
    for hit in (good, orphan, good):
        recorder.add(hit)
    recorder.flush()  # (its own thread may have written some first: same result)
    assert (recorder.dropped, recorder.pending()) == (1, 0)
    fresh(session)
    assert len(list(session.scalars(select(Event)))) == 2
