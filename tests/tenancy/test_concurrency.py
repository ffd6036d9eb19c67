"""Real threads, real transactions: races end in one clean winner and clear errors."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from omniloop.core.db import Database, Session
from omniloop.core.errors import OmniloopError
from omniloop.core.settings import get_settings
from omniloop.tenancy import staff, stores
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, StaffUser, Store
from omniloop.tenancy.schemas import StoreCreate
from tests.tenancy.factories import fresh, make_staff, make_tenant


def race(workers: int, work: Callable[[int], str]) -> Counter[str]:
    """Run `work` in threads released at the same moment; count what each returned."""
    barrier = threading.Barrier(workers)
    results: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcome = work(index)
        except OmniloopError as exc:
            outcome = exc.code
        except Exception as exc:  # anything else is a bug the test must show
            outcome = f"crash:{type(exc).__name__}:{exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return Counter(results)


def test_same_store_code_created_once(database: Database, session: Session) -> None:
    tenant = make_tenant(session)

    def create(index: int) -> str:
        with database.unit_of_work() as uow:
            stores.create_store(uow, system_actor(tenant.id), StoreCreate(
                code="TPE-01", name=f"attempt {index}"))
        return "created"

    outcomes = race(8, create)
    assert outcomes == Counter({"created": 1, "store_code_taken": 7})
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Store)) == 1
    assert session.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.action == "store.create")) == 1


def test_parallel_wrong_passwords_lock_once(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    owner = make_staff(session, tenant, email="owner@bean.tw")
    limit = get_settings().login_max_failures

    def guess(index: int) -> str:
        # Like the login page: a failed attempt is committed, since it counts.
        with database.unit_of_work() as uow:
            try:
                staff.authenticate(uow, tenant.id, "owner@bean.tw", f"guess {index}")
            except OmniloopError as exc:
                return exc.code
        return "signed_in"

    outcomes = race(12, guess)
    assert "signed_in" not in outcomes
    assert not [o for o in outcomes if o.startswith("crash")], outcomes
    fresh(session)
    member = session.get(StaffUser, (tenant.id, owner.id))
    assert member is not None
    assert member.locked_until is not None
    locks = session.scalar(select(func.count()).select_from(AuditEntry)
                           .where(AuditEntry.action == "staff.locked"))
    assert locks == 1
    assert outcomes["account_locked"] >= 1
    # Guesses already past the lock check when the lock landed may still be answered 401,
    # but no more than one round of parallel requests.
    assert outcomes["invalid_credentials"] >= limit - 1
