"""The brand's CLV: the models of `analytics.clv` fitted on its own orders.

Transactions are the brand's orders up to the end of the `as_of` day that are not refunded in
full, for what they brought in after refunds, per person (merged profiles together; erased
ones and walk-ins left out), per local day — the conventions of `analytics.clv`, the same
code as `omniloop analytics clv`. Amounts enter the models in major units (NT$), and
come back out in minor units for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import select

from omniloop.analytics import clv
from omniloop.analytics.errors import ClvUnavailable
from omniloop.analytics.rfm import day_end_utc, merged_and_erased, require_brand_wide
from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.core.money import minor_digits
from omniloop.customers.models import Customer
from omniloop.orders.models import Order, OrderStatus
from omniloop.tenancy.access import Actor
from omniloop.tenancy.tenants import get_tenant

TOP = 20
ALIVE_BINS = 10


@dataclass(frozen=True)
class CustomerValue:
    customer_id: str
    name: str | None
    purchases: int         # purchase days so far (frequency + 1)
    p_alive: float
    purchases_90: float
    purchases_365: float
    spend_minor: int       # expected amount per purchase
    clv_365_minor: int


@dataclass(frozen=True)
class ClvReport:
    as_of: date
    currency: str
    model: clv.ClvFit
    customers: list[CustomerValue]  # every scored person, highest CLV first
    alive_histogram: list[int]      # customers per tenth of P(alive), 0–10 % … 90–100 %

    @property
    def total_clv_365_minor(self) -> int:
        return sum(c.clv_365_minor for c in self.customers)

    @property
    def expected_purchases_90(self) -> float:
        return float(sum(c.purchases_90 for c in self.customers))

    @property
    def expected_purchases_365(self) -> float:
        return float(sum(c.purchases_365 for c in self.customers))

    @property
    def likely_active(self) -> int:
        return sum(1 for c in self.customers if c.p_alive >= 0.5)


def brand_transactions(session: Session, tenant_id: str, as_of: date, timezone: str,
                       currency: str) -> tuple[list[str], clv.IntArray, clv.IntArray,
                                               clv.FloatArray]:
    """(people, person index per row, local day ordinal per row, amount in major units)."""
    merged, erased = merged_and_erased(session, tenant_id)
    rows = session.execute(
        select(Order.customer_id, Order.paid_at, Order.total_minor - Order.refunded_minor)
        .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None),
               Order.paid_at < day_end_utc(as_of, timezone),
               Order.status != OrderStatus.refunded)).all()
    people: dict[str, int] = {}
    index: list[int] = []
    days: list[int] = []
    amounts: list[int] = []
    for customer_id, paid_at, net in rows:
        if customer_id is None:
            continue
        person = merged.get(customer_id, customer_id)
        if person in erased:
            continue
        index.append(people.setdefault(person, len(people)))
        days.append(to_local(paid_at, timezone).date().toordinal())
        amounts.append(int(net))
    scale = 10 ** minor_digits(currency)
    return (list(people), np.asarray(index, dtype=np.int64), np.asarray(days, dtype=np.int64),
            np.asarray(amounts, dtype=np.float64) / scale)


def clv_report(session: Session, actor: Actor, as_of: date) -> ClvReport:
    """Fit BG/NBD and Gamma-Gamma on the brand's orders up to `as_of`, predict per person."""
    require_brand_wide(actor)
    tenant = get_tenant(session, actor.tenant_id)
    people, index, days, amounts = brand_transactions(session, actor.tenant_id, as_of,
                                                      tenant.timezone, tenant.currency)
    codes, summary = clv.summarise(index, days, amounts, as_of.toordinal())
    try:
        model = clv.fit(summary)
    except clv.ClvFitError:
        raise ClvUnavailable() from None
    predicted = clv.predict(model)
    scale = 10 ** minor_digits(tenant.currency)
    ids = [people[int(code)] for code in codes]
    order = np.argsort(-predicted.clv_365, kind="stable")
    top_ids = [ids[i] for i in order[:TOP]]
    names = dict(session.execute(select(Customer.id, Customer.name).where(
        Customer.tenant_id == actor.tenant_id, Customer.id.in_(top_ids))).all())
    customers = [CustomerValue(
        customer_id=ids[i], name=names.get(ids[i]),
        purchases=int(summary.frequency[i]) + 1, p_alive=float(predicted.p_alive[i]),
        purchases_90=float(predicted.purchases_90[i]),
        purchases_365=float(predicted.purchases_365[i]),
        spend_minor=round(float(predicted.spend[i]) * scale),
        clv_365_minor=round(float(predicted.clv_365[i]) * scale)) for i in order]
    histogram = np.histogram(predicted.p_alive, bins=ALIVE_BINS, range=(0.0, 1.0))[0]
    return ClvReport(as_of=as_of, currency=tenant.currency, model=model, customers=customers,
                     alive_histogram=[int(n) for n in histogram])
