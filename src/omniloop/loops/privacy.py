"""The loop's part of a person's data export and erasure (customers/privacy.py registries).

Export: their feedback (rating, score, comment, when, where), their referral code, and the
referrals they made or came through. Erasure: feedback comments are blanked (free text can
hold anything: names, phone numbers) while the scores stay as anonymous statistics of the
store; the referral code is deleted, so their link stops working; referral rows keep only
ids and dates, which say nothing once the profile is erased.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, update

from omniloop.core.db import Session
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_erase_step, register_export_section
from omniloop.loops.models import Feedback, Referral, ReferralCode
from omniloop.tenancy.access import Actor


def _export(session: Session, actor: Actor, customer: Customer,
            ids: set[str]) -> dict[str, Any]:
    feedback = session.scalars(select(Feedback).where(
        Feedback.tenant_id == actor.tenant_id, Feedback.customer_id.in_(ids))
        .order_by(Feedback.created_at))
    codes = session.scalars(select(ReferralCode.code).where(
        ReferralCode.tenant_id == actor.tenant_id, ReferralCode.customer_id.in_(ids)))
    referrals = session.scalars(select(Referral).where(
        Referral.tenant_id == actor.tenant_id,
        or_(Referral.referrer_id.in_(ids), Referral.friend_id.in_(ids)))
        .order_by(Referral.created_at))
    return {
        "feedback": [{"rating": f.rating, "nps": f.nps, "comment": f.comment,
                      "store_id": f.store_id, "order_id": f.order_id,
                      "created_at": f.created_at.isoformat()} for f in feedback],
        "referral_codes": list(codes),
        "referrals": [{"role": "referrer" if r.referrer_id in ids else "friend",
                       "status": r.status.value, "created_at": r.created_at.isoformat(),
                       "qualified_at": r.qualified_at.isoformat() if r.qualified_at else None}
                      for r in referrals],
    }


def _erase(session: Session, actor: Actor, customer: Customer, ids: set[str]) -> int:
    blanked = session.execute(
        update(Feedback).where(Feedback.tenant_id == actor.tenant_id,
                               Feedback.customer_id.in_(ids), Feedback.comment != "")
        .values(comment="").execution_options(synchronize_session=False))
    removed = session.execute(
        delete(ReferralCode).where(ReferralCode.tenant_id == actor.tenant_id,
                                   ReferralCode.customer_id.in_(ids))
        .execution_options(synchronize_session=False))
    return int(blanked.rowcount or 0) + int(removed.rowcount or 0)  # type: ignore[attr-defined]


register_export_section("loop", _export)
register_erase_step("loop", _erase)
