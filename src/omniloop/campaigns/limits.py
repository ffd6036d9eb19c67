"""Per-customer limits as one atomic statement each, safe under concurrent requests.

`INSERT … ON CONFLICT DO UPDATE SET n = n + 1 WHERE n < limit` either takes a slot or changes
nothing (row count 0), in one statement, on SQLite and PostgreSQL alike. Counting existing
claims or redemptions first and inserting after would let two simultaneous requests both see
room for one.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Table, update
from sqlalchemy.dialects import postgresql, sqlite

from omniloop.campaigns.models import Campaign, CampaignParticipant
from omniloop.core.db import Session

Counter = Literal["claims", "redemptions"]


def take_participant_slot(session: Session, campaign: Campaign, customer_id: str,
                          counter: Counter, limit: int) -> bool:
    """Count one claim or redemption for this customer unless it would pass `limit`."""
    table: Table = CampaignParticipant.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {"tenant_id": campaign.tenant_id, "campaign_id": campaign.id,
              "customer_id": customer_id, "claims": 0, "redemptions": 0}
    values[counter] = 1
    column = table.c[counter]
    statement = insert(table).values(**values).on_conflict_do_update(
        index_elements=["tenant_id", "campaign_id", "customer_id"],
        set_={counter: column + 1},
        where=column < limit).returning(column)
    # RETURNING, not the row count: psycopg reports -1 for an upsert's rows.
    return session.execute(statement).first() is not None


def release_participant_slot(session: Session, campaign: Campaign, customer_id: str,
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
