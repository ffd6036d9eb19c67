"""Admin pages of analytics: the store dashboard, campaign lift, RFM segments and CLV.

Thin HTML over the module's services (`dashboard`, `lift`, `rfm`, `segments`,
`clv_report`): the pages pick the figures out of what the services return and hand them to
Plotly as data; nothing is computed here that a test of the service would not see. Charts are
drawn in the browser by Plotly's JavaScript, served from the installed `plotly` package
(`/admin/analytics/assets/plotly-<version>.min.js`), never from a CDN. Every table shown can
be downloaded as CSV.

Access: `campaigns.read` for every page (owners, marketers, store managers — the latter see
the dashboard and the campaign funnel of their own stores only); RFM and CLV are about
customers of every store, so they are for brand-wide staff (see `rfm.require_brand_wide`);
snapshots and saved segments need `campaigns.manage`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import plotly
from fastapi import APIRouter, Form, Query
from fastapi.responses import FileResponse, Response
from markupsafe import Markup

import omniloop.analytics.privacy  # noqa: F401  (registers the erasure step)
from omniloop.analytics import lift as lifts
from omniloop.analytics import rfm, segments
from omniloop.analytics.clv_report import ClvReport, clv_report
from omniloop.analytics.dashboard import (
    MAX_RANGE_DAYS,
    Dashboard,
    check_range,
    order_span,
    store_dashboard,
)
from omniloop.analytics.errors import ClvUnavailable, DateInvalid, DateRangeInvalid
from omniloop.analytics.loop import DELAY_BUCKETS, LoopDashboard, loop_dashboard
from omniloop.api.deps import SessionDep
from omniloop.campaigns import service as campaigns
from omniloop.campaigns.pages import CHANNEL_LABELS
from omniloop.campaigns.report import campaign_report
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_, OmniloopError
from omniloop.core.i18n import gettext
from omniloop.core.money import to_major
from omniloop.tenancy.access import Permission
from omniloop.tenancy.stores import list_stores
from omniloop.web.auth import Admin, AdminContext, CsrfChecked
from omniloop.web.forms import flash_message, redirect_done, refused, register_flash
from omniloop.web.nav import NavItem, register
from omniloop.web.templating import render

router = APIRouter(prefix="/admin/analytics", include_in_schema=False)

# After imports (6), before stores (10): campaigns (5.5) stay right before imports.
register(NavItem("analytics", N_("Analytics"), "/admin/analytics", Permission.campaigns_read,
                 6.5))
register_flash("snapshot_taken", N_("The RFM snapshot was saved."))
register_flash("segment_saved", N_("The segment was saved with its members."))
register_flash("segment_refreshed", N_("The segment's members were scored again."))

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = metadata.version("plotly")
PLOTLY_URL = f"/admin/analytics/assets/plotly-{PLOTLY_VERSION}.min.js"
DEFAULT_DAYS = 30
WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
CHANNELS = {"store": N_("In store"), "online": N_("Online")}
SUBNAV = (("dashboard", N_("Store dashboard"), "/admin/analytics"),
          ("lift", N_("Campaign lift"), "/admin/analytics/campaigns"),
          ("rfm", N_("RFM segments"), "/admin/analytics/rfm"),
          ("clv", N_("Customer lifetime value"), "/admin/analytics/clv"),
          ("loop", N_("Loop and cohorts"), "/admin/analytics/loop"))
CHART_FONT = {"family": "system-ui, 'Noto Sans CJK TC', sans-serif", "size": 12}


@router.get("/assets/plotly-{version}.min.js")
def plotly_js(version: str) -> Response:
    """Plotly's own bundle from the installed package; cached for a year (the URL names the
    version, so an upgrade changes it)."""
    if version != PLOTLY_VERSION:
        return Response(status_code=404)
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


# --- helpers --------------------------------------------------------------------------------


def _today(admin: AdminContext) -> date:
    return to_local(utcnow(), admin.tenant.timezone).date()


def _day(text: str | None) -> date | None:
    """A date typed in a form (YYYY-MM-DD); None when missing; ValueError when wrong."""
    if text is None or not text.strip():
        return None
    return date.fromisoformat(text.strip())


def _major(minor: int, currency: str) -> float:
    return float(to_major(minor, currency))


def chart(data: list[dict[str, Any]], layout: dict[str, Any] | None = None) -> Markup:
    """A Plotly figure as JSON for `analytics.js`, which draws every `[data-chart]` element."""
    base: dict[str, Any] = {"margin": {"l": 48, "r": 12, "t": 12, "b": 40}, "font": CHART_FONT,
                            "autosize": True, "showlegend": False,
                            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}
    base.update(layout or {})
    payload = json.dumps({"data": data, "layout": base}, ensure_ascii=False)
    # `</` cannot end the script element early; JSON stays valid.
    return Markup(payload.replace("</", "<\\/"))


def csv_response(filename: str, header: Sequence[str],
                 rows: Iterable[Sequence[object]]) -> Response:
    """UTF-8 with a BOM, so Excel opens Chinese names correctly."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _page(admin: AdminContext, template: str, section: str, status_code: int = 200,
          **values: Any) -> Response:
    return render(admin.request, f"admin/analytics/{template}", admin.template_values(
        "analytics", subnav=SUBNAV, section=section, plotly_url=PLOTLY_URL, **values),
        status_code=status_code)


# --- store dashboard --------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeChoice:
    start: date
    end: date
    store_id: str | None
    error: str | None
    has_orders: bool  # any order the actor may see at all


def _days(start: str | None, end: str | None,
          default: tuple[date, date]) -> tuple[tuple[date, date], str | None]:
    """The days typed (each missing one from `default`), or `default` with a clear message
    when they are wrong."""
    try:
        chosen = (_day(start) or default[0], _day(end) or default[1])
        check_range(*chosen)
    except ValueError:
        return default, gettext("Enter dates like 2026-11-01.")
    except DateRangeInvalid as exc:
        return default, exc.localized()
    return chosen, None


def _range(admin: AdminContext, session: Session, start: str | None, end: str | None,
           store: str | None) -> RangeChoice:
    """The range asked for, or the last 30 days of orders; a clear message when it is wrong."""
    span = order_span(session, admin.actor)
    last = span[1] if span else _today(admin)
    default = (max(last - timedelta(days=DEFAULT_DAYS - 1), span[0] if span else last), last)
    chosen, error = _days(start, end, default)
    return RangeChoice(*chosen, store or None, error, span is not None)


def dashboard_charts(board: Dashboard) -> dict[str, Markup]:
    currency = board.currency
    days = [d.isoformat() for d, _, _ in board.days]
    channels = list(board.by_channel)
    weekdays = [gettext(w) for w in WEEKDAYS]
    return {
        "sales": chart([{"type": "bar", "x": days,
                         "y": [_major(s, currency) for _, _, s in board.days],
                         "marker": {"color": "#2f6f5e"}, "name": gettext("Sales"),
                         "hovertemplate": "%{x}<br>%{y:,.0f}<extra></extra>"}],
                       {"xaxis": {"type": "date"}, "yaxis": {"tickformat": ",.0f"}}),
        "channels": chart([{"type": "pie", "hole": 0.5,
                            "labels": [gettext(CHANNELS.get(c, c)) for c in channels],
                            "values": [board.by_channel[c][0] for c in channels],
                            "marker": {"colors": ["#2f6f5e", "#d98c3f"]},
                            "textinfo": "label+percent"}],
                          {"margin": {"l": 8, "r": 8, "t": 8, "b": 8}}),
        "heatmap": chart([{"type": "heatmap", "z": board.heatmap, "x": list(range(24)),
                           "y": weekdays, "showscale": False,
                           "colorscale": [[0, "#f4f7f5"], [1, "#1f5c4c"]],
                           "hovertemplate": "%{y} %{x}:00 · %{z}<extra></extra>"}],
                         {"yaxis": {"autorange": "reversed"},
                          "xaxis": {"dtick": 2, "title": {"text": gettext("Hour")}},
                          "margin": {"l": 44, "r": 8, "t": 8, "b": 44}}),
        "products": chart([{"type": "bar", "orientation": "h",
                            "y": [p.name for p in board.products][::-1],
                            "x": [_major(p.sales_minor, currency) for p in board.products][::-1],
                            "marker": {"color": "#d98c3f"},
                            "hovertemplate": "%{y}: %{x:,.0f}<extra></extra>"}],
                          {"margin": {"l": 8, "r": 12, "t": 8, "b": 32},
                           "yaxis": {"automargin": True}}),
    }


@router.get("")
def dashboard_page(admin: Admin, session: SessionDep,
                   start: Annotated[str | None, Query(max_length=20)] = None,
                   end: Annotated[str | None, Query(max_length=20)] = None,
                   store: Annotated[str | None, Query(max_length=26)] = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    choice = _range(admin, session, start, end, store)
    stores = list_stores(session, admin.actor)
    if not choice.has_orders:
        return _page(admin, "dashboard.html", "dashboard", board=None, choice=choice,
                     stores=stores, empty=gettext("No orders yet: the dashboard fills in as "
                                                  "orders come in from the POS, the online "
                                                  "shop or an import."))
    board = store_dashboard(session, admin.actor, choice.start, choice.end, choice.store_id)
    empty = None
    if board.orders == 0:
        empty = gettext("No orders between {start} and {end}{where}. Choose another range.").format(
            start=choice.start.isoformat(), end=choice.end.isoformat(),
            where=(gettext(" at this store") if board.store_id else ""))
    return _page(admin, "dashboard.html", "dashboard", board=board, choice=choice,
                 stores=stores, empty=empty, channels=CHANNELS,
                 charts=dashboard_charts(board) if board.orders else {},
                 status_code=422 if choice.error else 200)


@router.get("/dashboard.csv")
def dashboard_csv(admin: Admin, session: SessionDep,
                  table: Annotated[str, Query(pattern="^(days|stores|products|categories|"
                                                      "heatmap)$")] = "days",
                  start: Annotated[str | None, Query(max_length=20)] = None,
                  end: Annotated[str | None, Query(max_length=20)] = None,
                  store: Annotated[str | None, Query(max_length=26)] = None) -> Response:
    admin.actor.require(Permission.campaigns_read)
    choice = _range(admin, session, start, end, store)
    if choice.error:
        raise DateRangeInvalid(field="start", days=MAX_RANGE_DAYS)
    board = store_dashboard(session, admin.actor, choice.start, choice.end, choice.store_id)
    currency = board.currency
    name = f"dashboard-{table}-{choice.start.isoformat()}-{choice.end.isoformat()}.csv"
    if table == "days":
        return csv_response(name, ["date", "orders", "sales"],
                            ([d.isoformat(), n, str(to_major(s, currency))]
                             for d, n, s in board.days))
    if table == "stores":
        return csv_response(name, ["store_id", "store", "orders", "sales"],
                            ([r.store_id, r.name, r.orders, str(to_major(r.sales_minor, currency))]
                             for r in board.stores))
    if table == "heatmap":
        return csv_response(name, ["weekday", *[f"{h:02d}" for h in range(24)]],
                            ([WEEKDAYS[i], *row] for i, row in enumerate(board.heatmap)))
    items = board.products if table == "products" else board.categories
    return csv_response(name, ["key", "name", "units", "sales"],
                        ([r.key, r.name, r.units, str(to_major(r.sales_minor, currency))]
                         for r in items))


# --- campaign lift ----------------------------------------------------------------------------


@router.get("/campaigns")
def lift_list(admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_read)
    found = campaigns.list_campaigns(session, admin.actor)
    return _page(admin, "campaigns.html", "lift", campaigns=found)


def lift_charts(page: lifts.LiftPage) -> dict[str, Markup]:
    report, lift = page.report, page.lift
    found: dict[str, Markup] = {}
    if report.by_channel:
        channels = [gettext(CHANNEL_LABELS[row.channel]) if row.channel in CHANNEL_LABELS
                    else row.channel for row in report.by_channel]
        found["funnel"] = chart(
            [{"type": "bar", "name": gettext("Claimed"), "x": channels,
              "y": [row.claimed for row in report.by_channel], "marker": {"color": "#9cc3b5"}},
             {"type": "bar", "name": gettext("Redeemed"), "x": channels,
              "y": [row.redeemed for row in report.by_channel], "marker": {"color": "#2f6f5e"}}],
            {"barmode": "group", "showlegend": True, "legend": {"orientation": "h", "y": -0.2}})
    if lift.targets and lift.holdout:
        rates = [lift.target_rate or 0.0, lift.holdout_rate or 0.0]
        found["lift"] = chart(
            [{"type": "bar", "x": [gettext("Targeted"), gettext("Holdout")],
              "y": [r * 100 for r in rates], "marker": {"color": ["#2f6f5e", "#b8b8b8"]},
              "hovertemplate": "%{x}: %{y:.1f}%<extra></extra>"}],
            {"yaxis": {"ticksuffix": "%", "rangemode": "tozero"}})
    return found


@router.get("/campaigns/{campaign_id}")
def lift_detail(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_read)
    campaign = campaigns.get_campaign(session, admin.actor, campaign_id)
    page = lifts.lift_page(session, admin.actor, campaign.id)
    verdict = gettext(page.verdict.message).format(**page.verdict.params)
    return _page(admin, "lift.html", "lift", campaign=campaign, page=page, verdict=verdict,
                 charts=lift_charts(page), channel_labels=CHANNEL_LABELS)


@router.get("/campaigns/{campaign_id}/stores.csv")
def lift_stores_csv(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_read)
    report = campaign_report(session, admin.actor, campaign_id)
    currency = report.currency
    return csv_response(f"campaign-{campaign_id}-stores.csv",
                        ["store_id", "store", "redeemed", "redeemed_from_claims", "conversion",
                         "discount", "revenue"],
                        ([r.store_id, r.name, r.redeemed, r.redeemed_from_claims,
                          "" if r.conversion is None else f"{r.conversion:.4f}",
                          str(to_major(r.discount_minor, currency)),
                          str(to_major(r.revenue_minor, currency))]
                         for r in report.by_store))


@router.get("/campaigns/{campaign_id}/channels.csv")
def lift_channels_csv(campaign_id: str, admin: Admin, session: SessionDep) -> Response:
    admin.actor.require(Permission.campaigns_read)
    report = campaign_report(session, admin.actor, campaign_id)
    return csv_response(f"campaign-{campaign_id}-channels.csv",
                        ["channel", "claimed", "redeemed", "conversion"],
                        ([r.channel, r.claimed, r.redeemed,
                          "" if r.conversion is None else f"{r.conversion:.4f}"]
                         for r in report.by_channel))




# --- RFM ----------------------------------------------------------------------------------


def _as_of(admin: AdminContext, text: str | None) -> tuple[date, str | None]:
    today = _today(admin)
    try:
        chosen = _day(text) or today
    except ValueError:
        return today, gettext("Enter dates like 2026-11-01.")
    if chosen > today:
        return today, gettext("Choose a date up to today.")
    return chosen, None


def rfm_charts(counts: dict[str, int]) -> dict[str, Markup]:
    keys = list(rfm.SEGMENT_KEYS)
    return {"segments": chart(
        [{"type": "bar", "orientation": "h",
          "y": [gettext(rfm.SEGMENT_LABELS[k]) for k in keys][::-1],
          "x": [counts[k] for k in keys][::-1], "marker": {"color": "#2f6f5e"},
          "hovertemplate": "%{y}: %{x:,}<extra></extra>"}],
        {"margin": {"l": 8, "r": 12, "t": 8, "b": 32}, "yaxis": {"automargin": True}})}


def _rfm(admin: AdminContext, session: Session, day: date, *, error: str | None = None,
         form_error: str | None = None, before: str | None = None, after: str | None = None,
         flash: str | None = None) -> Response:
    scores = rfm.score_customers(session, admin.actor, day)
    counts = scores.segment_counts()
    snapshots = segments.list_snapshots(session, admin.actor)
    moved = None
    if len(snapshots) >= 2:
        ids = {s.id for s in snapshots}
        after_id = after if after in ids else snapshots[0].id
        before_id = before if before in ids and before != after_id else next(
            s.id for s in snapshots if s.id != after_id)
        moved = segments.movement(session, admin.actor, before_id, after_id)
    return _page(
        admin, "rfm.html", "rfm", status_code=422 if error or form_error else 200, as_of=day,
        error=error, form_error=form_error, scores=scores, counts=counts,
        keys=rfm.SEGMENT_KEYS, labels=rfm.SEGMENT_LABELS,
        charts=rfm_charts(counts) if len(scores) else {}, snapshots=snapshots, moved=moved,
        saved=segments.list_segments(session, admin.actor),
        can_manage=admin.actor.can(Permission.campaigns_manage), flash=flash)


@router.get("/rfm")
def rfm_page(admin: Admin, session: SessionDep,
             as_of: Annotated[str | None, Query(max_length=20)] = None,
             before: Annotated[str | None, Query(max_length=26)] = None,
             after: Annotated[str | None, Query(max_length=26)] = None,
             done: str | None = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    day, error = _as_of(admin, as_of)
    return _rfm(admin, session, day, error=error, before=before, after=after,
                flash=flash_message(done))


@router.get("/rfm.csv")
def rfm_csv(admin: Admin, session: SessionDep,
            as_of: Annotated[str | None, Query(max_length=20)] = None,
            segment: Annotated[str | None, Query(max_length=24)] = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    day, error = _as_of(admin, as_of)
    if error:
        raise DateInvalid(field="as_of")
    scores = rfm.score_customers(session, admin.actor, day)
    index = rfm.SEGMENT_KEYS.index(segment) if segment in rfm.SEGMENT_KEYS else None
    currency = admin.tenant.currency
    rows = ([cid, int(scores.recency_days[i]), int(scores.frequency[i]),
             str(to_major(int(scores.monetary_minor[i]), currency)), int(scores.r[i]),
             int(scores.f[i]), int(scores.m[i]), rfm.SEGMENT_KEYS[int(scores.segment[i])]]
            for i, cid in enumerate(scores.customer_ids)
            if index is None or int(scores.segment[i]) == index)
    suffix = f"-{segment}" if index is not None else ""
    return csv_response(f"rfm-{day.isoformat()}{suffix}.csv",
                        ["customer_id", "recency_days", "frequency", "monetary", "r", "f", "m",
                         "segment"], rows)


@router.get("/rfm/movement.csv")
def movement_csv(admin: Admin, session: SessionDep,
                 before: Annotated[str, Query(max_length=26)],
                 after: Annotated[str, Query(max_length=26)]) -> Response:
    moved = segments.movement(session, admin.actor, before, after)
    return csv_response(
        f"rfm-movement-{moved.before.as_of}-{moved.after.as_of}.csv",
        ["from_segment", "to_segment", "customers"],
        ([a or "not_scored", b or "not_scored", n] for (a, b), n in sorted(
            moved.counts.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))))


@router.post("/rfm/snapshots", dependencies=[CsrfChecked])
def rfm_snapshot(admin: Admin, session: SessionDep,
                 as_of: Annotated[str, Form(max_length=20)] = "") -> Response:
    rfm.require_brand_wide(admin.actor, Permission.campaigns_manage)
    day, error = _as_of(admin, as_of)
    if error:
        raise DateInvalid(field="as_of")
    segments.take_snapshot(session, admin.actor, day)
    return redirect_done("/admin/analytics/rfm", "snapshot_taken")


@router.post("/segments", dependencies=[CsrfChecked])
def segment_save(admin: Admin, session: SessionDep,
                 name: Annotated[str, Form(max_length=200)] = "",
                 groups: Annotated[list[str] | None, Form()] = None,
                 as_of: Annotated[str, Form(max_length=20)] = "") -> Response:
    rfm.require_brand_wide(admin.actor, Permission.campaigns_manage)
    day, error = _as_of(admin, as_of)
    if error:
        raise DateInvalid(field="as_of")
    try:
        segments.save_segment(session, admin.actor, name, groups or [], day)
    except OmniloopError as exc:
        return _rfm(admin, session, day, form_error=refused(session, exc))
    return redirect_done("/admin/analytics/rfm", "segment_saved")


@router.post("/segments/{segment_id}/refresh", dependencies=[CsrfChecked])
def segment_refresh(segment_id: str, admin: Admin, session: SessionDep) -> Response:
    rfm.require_brand_wide(admin.actor, Permission.campaigns_manage)
    day = _today(admin)
    segments.refresh_segment(session, admin.actor, segment_id, day)
    return redirect_done("/admin/analytics/rfm", "segment_refreshed")


@router.get("/segments/{segment_id}.csv")
def segment_csv(segment_id: str, admin: Admin, session: SessionDep) -> Response:
    segment = segments.get_segment(session, admin.actor, segment_id)
    ids = segments.segment_customer_ids(session, admin.actor, segment.id)
    return csv_response(f"segment-{segment.id}.csv", ["customer_id"], ([i] for i in ids))


# --- CLV ----------------------------------------------------------------------------------


def clv_charts(report: ClvReport) -> dict[str, Markup]:
    width = 100 / len(report.alive_histogram)
    middles = [(i + 0.5) * width for i in range(len(report.alive_histogram))]
    return {"alive": chart([{"type": "bar", "x": middles, "y": report.alive_histogram,
                             "width": width * 0.9, "marker": {"color": "#2f6f5e"},
                             "customdata": [[m - width / 2, m + width / 2] for m in middles],
                             "hovertemplate": "%{customdata[0]:.0f}–%{customdata[1]:.0f}%: "
                                              "%{y:,}<extra></extra>"}],
                           {"xaxis": {"title": {"text": gettext("P(active)")},
                                      "range": [0, 100], "dtick": 20, "ticksuffix": "%"}})}


@router.get("/clv")
def clv_page(admin: Admin, session: SessionDep,
             as_of: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    day, error = _as_of(admin, as_of)
    try:
        report = clv_report(session, admin.actor, day)
    except ClvUnavailable as exc:
        return _page(admin, "clv.html", "clv", as_of=day, error=error, report=None,
                     unavailable=exc.localized(), status_code=422 if error else 200)
    return _page(admin, "clv.html", "clv", as_of=day, error=error, report=report,
                 unavailable=None, charts=clv_charts(report), top=report.customers[:20],
                 status_code=422 if error else 200)


@router.get("/clv.csv")
def clv_csv(admin: Admin, session: SessionDep,
            as_of: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    day, error = _as_of(admin, as_of)
    if error:
        raise DateInvalid(field="as_of")
    report = clv_report(session, admin.actor, day)
    currency = report.currency
    return csv_response(f"clv-{day.isoformat()}.csv",
                        ["customer_id", "purchases", "p_active", "purchases_90d",
                         "purchases_365d", "spend_per_purchase", "clv_365d"],
                        ([c.customer_id, c.purchases, f"{c.p_alive:.4f}",
                          f"{c.purchases_90:.4f}", f"{c.purchases_365:.4f}",
                          str(to_major(c.spend_minor, currency)),
                          str(to_major(c.clv_365_minor, currency))]
                         for c in report.customers))


# --- the loop ----------------------------------------------------------------------------


def _bucket_labels() -> list[str]:
    labels, low = [], 0
    for bound in DELAY_BUCKETS:
        if bound == 0:
            labels.append(gettext("same day"))
        elif bound == low == 1:
            labels.append(gettext("next day"))
        else:
            labels.append(gettext("{low}–{high} days").format(low=low, high=bound))
        low = bound + 1
    labels.append(gettext("over {days} days").format(days=DELAY_BUCKETS[-1]))
    return labels


def loop_charts(board: LoopDashboard) -> dict[str, Markup]:
    if not board.redeemed:
        return {}
    return {"delays": chart([{"type": "bar", "x": _bucket_labels(), "y": board.buckets,
                              "marker": {"color": "#2f6f5e"},
                              "hovertemplate": "%{x}: %{y:,}<extra></extra>"}])}


@router.get("/loop")
def loop_page(admin: Admin, session: SessionDep,
              start: Annotated[str | None, Query(max_length=20)] = None,
              end: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    today = _today(admin)
    chosen, error = _days(start, end, (today - timedelta(days=364), today))
    board = loop_dashboard(session, admin.actor, *chosen)
    span = max((len(c.active) for c in board.cohorts), default=0)
    return _page(admin, "loop.html", "loop", status_code=422 if error else 200, error=error,
                 board=board, quartiles=board.delay_quantiles(), span=span,
                 buckets=list(zip(_bucket_labels(), board.buckets, strict=True)),
                 charts=loop_charts(board))


@router.get("/loop.csv")
def loop_csv(admin: Admin, session: SessionDep,
             table: Annotated[str, Query(pattern="^(cohorts|delays)$")] = "cohorts",
             start: Annotated[str | None, Query(max_length=20)] = None,
             end: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    rfm.require_brand_wide(admin.actor)
    today = _today(admin)
    try:
        chosen = (_day(start) or today - timedelta(days=364), _day(end) or today)
    except ValueError:
        raise DateInvalid(field="start") from None
    board = loop_dashboard(session, admin.actor, *chosen)
    name = f"loop-{table}-{chosen[0]}-{chosen[1]}.csv"
    if table == "delays":
        return csv_response(name, ["days_from_claim_to_redemption", "coupons"],
                            zip(_bucket_labels(), board.buckets, strict=True))
    span = max((len(c.active) for c in board.cohorts), default=0)
    return csv_response(name, ["first_purchase_month", "first_channel", "people",
                               *[f"month_{k}" for k in range(span)]],
                        ([c.month.strftime("%Y-%m"), c.first, c.size,
                          *[c.active[k] if k < len(c.active) else "" for k in range(span)]]
                         for c in board.cohorts))
