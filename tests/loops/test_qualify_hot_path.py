"""The referral check runs on every order and redemption of every brand: one statement for a
customer with no pending referral; merged profiles still find the friend's referral."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.identify import merge
from omniloop.customers.models import Customer
from omniloop.loops.models import Referral, ReferralStatus
from omniloop.loops.referrals import code_for, qualify, refer
from omniloop.tenancy.access import system_actor
from tests.customers.factories import make_customer
from tests.loops.factories import make_shop
from tests.tenancy.factories import fresh


def test_a_customer_without_referral_costs_one_statement(session: Session) -> None:
    shop = make_shop(session)
    customer = make_customer(session, shop.tenant, ("phone", "0912345678"))
    store_id = shop.store.id
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", count)
    try:
        found = qualify(session, system_actor(shop.tenant.id), customer, store_id, utcnow(),
                        "order:x")
    finally:
        event.remove(connection, "before_cursor_execute", count)
    assert found is None
    assert len(statements) == 1


def test_a_merged_friend_still_qualifies(database: Database, session: Session) -> None:
    shop = make_shop(session)
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    other = make_customer(session, shop.tenant, ("email", "friend@example.com"))
    actor = system_actor(shop.tenant.id)
    with database.unit_of_work() as work:
        code = code_for(work, actor, member)
    with database.unit_of_work() as work:
        friend = refer(work, actor, code, "+886911222333", None).friend_id
    with database.unit_of_work() as work:  # the friend's profile folds into another one
        merge(work, actor, work.get_one(Customer, (shop.tenant.id, other)),
              work.get_one(Customer, (shop.tenant.id, friend)), reason="test")
    with database.unit_of_work() as work:
        found = qualify(work, actor, other, shop.store.id, utcnow(), "order:x")
        assert found is not None
    fresh(session)
    referral = session.get(Referral, (shop.tenant.id, found.id))
    assert referral is not None
    assert referral.status == ReferralStatus.qualified
