"""A referral qualifies once, whatever races: concurrent first purchases on real threads,
each in its own transaction, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.core.i18n import gettext
from omniloop.loops.errors import ReferralCapReached, SelfReferral
from omniloop.loops.models import Referral, ReferralStatus
from omniloop.loops.referrals import REASON_DEVICE, REASON_PHONE, code_for, refer
from omniloop.loyalty.ledger import balance_of
from omniloop.loyalty.models import PointsEntry
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from tests.customers.factories import make_customer
from tests.loops.factories import make_shop
from tests.tenancy.factories import fresh

THREADS = 8


def _referred(session: Session, database: Database, shop_tenant_id: str,
              member: str) -> Referral:
    actor = system_actor(shop_tenant_id)
    with database.unit_of_work() as work:
        code = code_for(work, actor, member)
    with database.unit_of_work() as work:
        result = refer(work, actor, code, "+886911222333", None)
    fresh(session)
    referral = session.get(Referral, (shop_tenant_id, result.referral.id))
    assert referral is not None
    return referral


def test_concurrent_first_purchases_reward_once(database: Database, session: Session) -> None:
    shop = make_shop(session)
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    referral = _referred(session, database, shop.tenant.id, member)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def buy(index: int) -> None:
        try:
            barrier.wait()
            with database.unit_of_work() as work:
                ingest_order(work, system_actor(shop.tenant.id), OrderIn.model_validate({
                    "external_id": f"RACE-{index}", "source": "pos",
                    "store_id": shop.store.id, "customer_id": referral.friend_id,
                    "lines": [{"sku": "LATTE", "name": "拿鐵", "quantity": 1,
                               "unit_price_minor": 12000}],
                    "paid_at": utcnow().isoformat()}))
        except BaseException as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    fresh(session)
    done = session.get(Referral, (shop.tenant.id, referral.id))
    assert done is not None
    assert done.status == ReferralStatus.qualified
    rewards = session.scalar(select(func.count()).select_from(PointsEntry).where(
        PointsEntry.tenant_id == shop.tenant.id, PointsEntry.reference == referral.id))
    assert rewards == 2  # one for each person
    assert balance_of(session, shop.tenant.id, referral.referrer_id) == 100
    # The friend also earned points for the 8 orders (1 per NT$100): referral 50 + 8.
    assert balance_of(session, shop.tenant.id, referral.friend_id) == 58


def test_purchase_after_the_window_does_not_qualify(database: Database,
                                                    session: Session) -> None:
    shop = make_shop(session, qualify_days=7)
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    referral = _referred(session, database, shop.tenant.id, member)
    with database.unit_of_work() as work:  # eight days later: the window has passed
        work.execute(update(Referral).where(Referral.id == referral.id).values(
            qualify_by=utcnow() - timedelta(days=1), created_at=utcnow() - timedelta(days=8)))
    with database.unit_of_work() as work:
        ingest_order(work, system_actor(shop.tenant.id), OrderIn.model_validate({
            "external_id": "LATE", "source": "pos", "store_id": shop.store.id,
            "customer_id": referral.friend_id,
            "lines": [{"sku": "LATTE", "name": "拿鐵", "quantity": 1, "unit_price_minor": 100}],
            "paid_at": utcnow().isoformat()}))
    fresh(session)
    late = session.get(Referral, (shop.tenant.id, referral.id))
    assert late is not None
    assert late.status == ReferralStatus.expired
    assert balance_of(session, shop.tenant.id, referral.referrer_id) == 0


def test_self_referral_and_monthly_cap(database: Database, session: Session) -> None:
    shop = make_shop(session, monthly_cap=1)
    member = make_customer(session, shop.tenant, ("phone", "0912345678"),
                           ("device", "member-device-000001"))
    actor = system_actor(shop.tenant.id)
    with database.unit_of_work() as work:
        code = code_for(work, actor, member)
    with database.unit_of_work() as work, pytest.raises(SelfReferral) as by_phone:
        refer(work, actor, code, "+886912345678", None)
    assert by_phone.value.params["reason"] == gettext(REASON_PHONE)
    with database.unit_of_work() as work, pytest.raises(SelfReferral) as by_device:
        refer(work, actor, code, "+886933000111", "member-device-000001")
    assert by_device.value.params["reason"] == gettext(REASON_DEVICE)
    with database.unit_of_work() as work:
        refer(work, actor, code, "+886933000222", None)
    with database.unit_of_work() as work, pytest.raises(ReferralCapReached):
        refer(work, actor, code, "+886933000333", None)
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Referral)) == 1


def _store_purchase(database: Database, shop_tenant_id: str, store_id: str, customer_id: str,
                    external_id: str) -> None:
    with database.unit_of_work() as work:
        ingest_order(work, system_actor(shop_tenant_id), OrderIn.model_validate({
            "external_id": external_id, "source": "pos", "store_id": store_id,
            "customer_id": customer_id,
            "lines": [{"sku": "LATTE", "name": "拿鐵", "quantity": 1, "unit_price_minor": 50}],
            "paid_at": utcnow().isoformat()}))


def test_only_the_direct_referrer_is_rewarded(database: Database, session: Session) -> None:
    """One level: the member's friend brings a friend of their own; that friend's first visit
    rewards the friend who invited them, never the member above."""
    shop = make_shop(session)
    tenant_id = shop.tenant.id
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    first = _referred(session, database, tenant_id, member)
    _store_purchase(database, tenant_id, shop.store.id, first.friend_id, "FIRST")
    actor = system_actor(tenant_id)
    with database.unit_of_work() as work:
        friends_code = code_for(work, actor, first.friend_id)
    with database.unit_of_work() as work:
        second = refer(work, actor, friends_code, "+886922333444", None).referral
    _store_purchase(database, tenant_id, shop.store.id, second.friend_id, "SECOND")
    fresh(session)
    done = session.get(Referral, (tenant_id, second.id))
    assert done is not None
    assert done.status == ReferralStatus.qualified
    assert done.referrer_id == first.friend_id
    assert balance_of(session, tenant_id, member) == 100  # the first referral's only
    assert balance_of(session, tenant_id, first.friend_id) == 50 + 100  # welcomed, then referrer
    assert balance_of(session, tenant_id, second.friend_id) == 50
