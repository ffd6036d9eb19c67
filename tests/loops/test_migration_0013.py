"""Migration 0013 counts the scans recorded before touchpoints had a counter."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session as OrmSession

from omniloop.core.db import Database
from omniloop.core.migrate import downgrade, upgrade
from omniloop.customers.models import Event
from omniloop.loops.models import Placement, Purpose, Touchpoint
from omniloop.tenancy.models import Store, Tenant


def test_upgrade_counts_earlier_scans(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/m.db")
    upgrade(db.engine)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with OrmSession(db.engine) as session:
        session.add(Tenant(id="T" * 26, slug="b", name="B"))
        session.flush()
        session.add(Store(tenant_id="T" * 26, id="S" * 26, code="S1", name="信義店"))
        session.flush()
        for tp_id, code in (("A" * 26, "AAAAAAAA"), ("B" * 26, "BBBBBBBB")):
            session.add(Touchpoint(tenant_id="T" * 26, id=tp_id, store_id="S" * 26,
                                   code=code, placement=Placement.table,
                                   purpose=Purpose.membership))
        session.flush()
        for index, props in enumerate([{"touchpoint_id": "A" * 26}] * 3
                                      + [{"code": "x"}, {"touchpoint_id": "Z" * 26}]):
            session.add(Event(tenant_id="T" * 26, id=f"E{index:025d}",
                              client_event_id=f"e{index}", type="qr_scan",
                              channel="offline", store_id="S" * 26, properties=props,
                              occurred_at=now))
        session.commit()
    downgrade(db.engine, "0012_message_tracking")
    upgrade(db.engine)
    with db.engine.connect() as connection:
        counts: dict[str, int] = {str(i): int(n) for i, n in connection.execute(
            text("SELECT id, scans FROM touchpoints"))}
    assert counts == {"A" * 26: 3, "B" * 26: 0}
    db.dispose()
