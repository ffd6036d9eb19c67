"""The loop's periodic job: referrals whose window passed without a store purchase expire.

A referral is pending for `qualify_days` after the friend signed up (`qualify_by`). When
that moment has passed with no first store purchase, `expire_referrals` moves it pending →
expired with one conditional UPDATE, so running it twice, or beside a purchase that
qualifies the referral at that very moment, changes nothing twice. The rule is the one
`referrals.qualify` applies (`referrals.window_open`): a purchase at or before `qualify_by`
qualifies; after it, it does not. The worker runs `expire_everywhere` hourly; the CLI runs
it with `omniloop loops expire-referrals`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from omniloop.core.clock import utcnow
from omniloop.core.db import Session, get_database
from omniloop.loops.models import Referral, ReferralStatus
from omniloop.tenancy.tenants import list_tenants

log = logging.getLogger("omniloop.loops")


def expire_referrals(session: Session, tenant_id: str, *, now: datetime | None = None) -> int:
    """Pending referrals of the brand whose window has passed → expired; answers how many."""
    result = session.execute(
        update(Referral)
        .where(Referral.tenant_id == tenant_id, Referral.status == ReferralStatus.pending,
               Referral.qualify_by < (now or utcnow()))
        .values(status=ReferralStatus.expired)
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def expire_everywhere(*, now: datetime | None = None) -> dict[str, int]:
    """`expire_referrals` for every brand, each in its own transaction (one brand's failure
    is logged and does not stop the others); answers the count per brand slug."""
    now = now or utcnow()
    with get_database().unit_of_work(write=False) as session:
        brands = [(t.id, t.slug) for t in list_tenants(session)]
    done: dict[str, int] = {}
    for tenant_id, slug in brands:
        try:
            with get_database().unit_of_work() as session:
                done[slug] = expire_referrals(session, tenant_id, now=now)
        except Exception:  # noqa: BLE001 - logged; the next hour's run catches up
            log.exception("referral expiry failed for %s", slug)
            continue
        if done[slug]:
            log.info("referrals expired for %s: %d", slug, done[slug])
    return done
