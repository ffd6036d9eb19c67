"""Per-customer limits as one atomic statement each, safe under concurrent requests.

`INSERT … ON CONFLICT DO UPDATE SET n = n + 1 WHERE n < limit` either takes a slot or changes
nothing (row count 0), in one statement, on SQLite and PostgreSQL alike. Counting existing
claims or redemptions first and inserting after would let two simultaneous requests both see
room for one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite

from omniloop.campaigns.models import CampaignParticipant
from omniloop.core.db import Session
from omniloop.core.prepared import Prepared

if TYPE_CHECKING:
    from omniloop.campaigns.models import Campaign
    from omniloop.campaigns.redemption import CampaignRow

Counter = Literal["claims", "redemptions"]


# A campaign, or the POS's plain row of it (`redemption.CampaignRow`): the slot needs its key.
CampaignKey: TypeAlias = "Campaign | CampaignRow"


def _take_slot(insert: Any, counter: Counter) -> Prepared:
    table: Table = CampaignParticipant.__table__  # type: ignore[assignment]
    column = table.c[counter]
    statement = insert(table).values(
        tenant_id=bindparam("p_tenant_id"), campaign_id=bindparam("p_campaign_id"),
        customer_id=bindparam("p_customer_id"), claims=bindparam("p_claims"),
        redemptions=bindparam("p_redemptions"),
    ).on_conflict_do_update(
        index_elements=["tenant_id", "campaign_id", "customer_id"],
        set_={counter: column + 1},
        where=column < bindparam("p_limit")).returning(column)
    return Prepared(statement)


# Built once per dialect and counter: the upsert is each dialect's own construct, and
# building it costs more than running it (a redemption by a known member runs it while it
# holds SQLite's write lock).
_TAKE_SLOT: dict[tuple[str, Counter], Prepared] = {
    (name, counter): _take_slot(insert, counter)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    for counter in ("claims", "redemptions")}


def take_participant_slot(session: Session, campaign: CampaignKey, customer_id: str,
                          counter: Counter, limit: int) -> bool:
    """Count one claim or redemption for this customer unless it would pass `limit`."""
    dialect = session.get_bind().dialect.name
    # RETURNING, not the row count: psycopg reports -1 for an upsert's rows.
    return _TAKE_SLOT[dialect, counter].first(session, {
        "p_tenant_id": campaign.tenant_id, "p_campaign_id": campaign.id,
        "p_customer_id": customer_id, "p_claims": int(counter == "claims"),
        "p_redemptions": int(counter == "redemptions"), "p_limit": limit}) is not None


def release_participant_slot(session: Session, campaign: CampaignKey, customer_id: str,
                             counter: Counter) -> None:
    """Give a slot back (a voided redemption)."""
    column = getattr(CampaignParticipant, counter)
    session.execute(
        update(CampaignParticipant)
        .where(CampaignParticipant.tenant_id == campaign.tenant_id,
               CampaignParticipant.campaign_id == campaign.id,
               CampaignParticipant.customer_id == customer_id, column > 0)
        .values({counter: column - 1})
        .execution_options(synchronize_session=False))
