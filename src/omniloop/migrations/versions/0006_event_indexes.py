"""Events: drop the (tenant_id, type, occurred_at) index, which nothing reads.

Every event inserted paid for a random-position entry in it (about half the database work
of batch ingestion on SQLite, see docs/benchmarks.md), while no query filters events by
type. The indexes that remain serve what reads events: the primary key, the client event
id (idempotency) and (tenant_id, customer_id, occurred_at) (timelines, export, erasure).
A module that comes to query events by type adds the index it needs, with its cost measured.

Revision ID: 0006_event_indexes
Revises: 0005_campaigns
Create Date: 2026-11-25 05:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0006_event_indexes'
down_revision: str | None = '0005_campaigns'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_tenant_id_type_occurred_at')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_tenant_id_type_occurred_at',
                              ['tenant_id', 'type', 'occurred_at'], unique=False)
