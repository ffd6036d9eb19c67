"""Races with real threads, each in its own transaction as a request would be.

The guarantees under test (DESIGN invariant 1 and 2): a coupon is redeemed at most once; a
campaign never exceeds its quota, budget or per-customer limit; a retried redemption with
the same idempotency key changes nothing.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from omniloop.campaigns.claims import claim_coupon
from omniloop.campaigns.models import Campaign, Redemption, RedemptionStatus
from omniloop.campaigns.redemption import redeem
from omniloop.campaigns.schemas import ClaimIn, RedeemIn
from omniloop.core.db import Database, Session
from omniloop.core.errors import OmniloopError
from omniloop.customers.schemas import IdentityIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.campaigns.factories import make_campaign, make_codes
from tests.tenancy.factories import fresh, make_store, make_tenant

CLIENTS = 32


def run_clients(clients: int, work: Callable[[int], list[str]]) -> Counter[str]:
    """Start `clients` threads at the same moment; count every outcome they report."""
    barrier = threading.Barrier(clients)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        try:
            found = work(index)
        except Exception as exc:  # a crash must show in the counts, not vanish in a thread
            found = [f"crash:{type(exc).__name__}:{exc}"]
        with lock:
            outcomes.update(found)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def attempt(database: Database, tenant: Tenant, key: str, **fields: object) -> str:
    body = RedeemIn.model_validate({"store_code": "TPE01", "basket_total_minor": 50000,
                                    **fields})
    try:
        with database.unit_of_work() as session:
            result = redeem(session, system_actor(tenant.id), body, key)
            return "replayed" if result.replayed else "redeemed"
    except OmniloopError as error:
        return error.code


def active_redemptions(session: Session, campaign: Campaign) -> int:
    fresh(session)
    return int(session.scalar(select(func.count()).select_from(Redemption).where(
        Redemption.tenant_id == campaign.tenant_id, Redemption.campaign_id == campaign.id,
        Redemption.status == RedemptionStatus.redeemed)) or 0)


def test_32_clients_race_for_100_unique_codes(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE01")
    campaign = make_campaign(session, tenant)
    codes = make_codes(database, campaign, 100)
    assert len(codes) == 100

    def client(index: int) -> list[str]:
        order = codes[:]
        random.Random(index).shuffle(order)
        return [attempt(database, tenant, f"c{index}-{code}", code=code) for code in order]

    outcomes = run_clients(CLIENTS, client)
    assert outcomes == Counter({"redeemed": 100,
                                "coupon_already_redeemed": CLIENTS * 100 - 100})
    assert active_redemptions(session, campaign) == 100
    stored = session.get(Campaign, (tenant.id, campaign.id))
    assert stored is not None
    assert stored.redeemed_count == 100


def test_shared_code_quota_is_exact(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE01")
    campaign = make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100",
                             quota=10)
    outcomes = run_clients(CLIENTS, lambda i: [
        attempt(database, tenant, f"q{i}-{n}", code="spring100") for n in range(2)])
    assert outcomes["redeemed"] == 10
    assert outcomes["quota_exhausted"] == CLIENTS * 2 - 10
    assert active_redemptions(session, campaign) == 10


def test_per_customer_limit_holds_under_race(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE01")
    campaign = make_campaign(session, tenant, code_mode="shared", shared_code="TWICE",
                             per_customer_limit=2)
    with database.unit_of_work() as s:
        from omniloop.customers.identify import identify
        customer_id = identify(s, system_actor(tenant.id),
                               [IdentityIn(kind="phone", value="0912345678")]).customer.id
    outcomes = run_clients(16, lambda i: [
        attempt(database, tenant, f"p{i}", code="TWICE", customer_id=customer_id)])
    assert outcomes["redeemed"] == 2
    assert outcomes["customer_limit_reached"] == 14
    assert active_redemptions(session, campaign) == 2


def test_budget_is_never_exceeded(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE01")
    # NT$300 off each, NT$1,000 budget: three fit, a fourth would overspend.
    campaign = make_campaign(session, tenant, code_mode="shared", shared_code="BUDGET",
                             value_minor=30000, budget_minor=100000)
    outcomes = run_clients(16, lambda i: [attempt(database, tenant, f"b{i}", code="BUDGET")])
    assert outcomes["redeemed"] == 3
    assert outcomes["budget_exhausted"] == 13
    fresh(session)
    stored = session.get(Campaign, (tenant.id, campaign.id))
    assert stored is not None
    assert stored.discount_minor == 90000


def test_one_key_sent_by_many_retries_redeems_once(database: Database,
                                                   session: Session) -> None:
    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE01")
    campaign = make_campaign(session, tenant)
    code = make_codes(database, campaign, 1)[0]
    outcomes = run_clients(16, lambda i: [attempt(database, tenant, "same-key", code=code)])
    assert outcomes == Counter({"redeemed": 1, "replayed": 15})
    assert active_redemptions(session, campaign) == 1


def test_claims_stop_at_the_quota(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant, quota=5)

    def claim(index: int) -> list[str]:
        try:
            with database.unit_of_work() as s:
                claim_coupon(s, system_actor(tenant.id), campaign.id, ClaimIn(
                    identities=[IdentityIn(kind="phone", value=f"09120000{index:02d}")]))
                return ["claimed"]
        except OmniloopError as error:
            return [error.code]

    outcomes = run_clients(20, claim)
    assert outcomes == Counter({"claimed": 5, "claims_exhausted": 15})
