"""Loops, more: touchpoint scan counts and retirement; the referral expiry job's index.

* `touchpoints.scans` — scans recorded so far, added to by the recorder in batches (as
  `short_links.clicks`); filled here from the `qr_scan` events already recorded. A touchpoint
  never scanned may be deleted; one that was is retired.
* `touchpoints.retired_at` — a retired code answers "not in use" for good.
* `ix_referrals_tenant_id_status_qualify_by` — the periodic job that marks a brand's pending
  referrals past their window as expired.

No index on events by type: the loop report reads every event of the range (its "active
customers" count needs all types), so such an index would serve no query and cost every
ingested event a write (docs/benchmarks.md, migration 0006).

Revision ID: 0013_loops_more
Revises: 0012_message_tracking
Create Date: 2026-11-25 12:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_loops_more'
down_revision: str | None = '0012_message_tracking'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('touchpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scans', sa.BigInteger(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('touchpoints', schema=None) as batch_op:
        batch_op.alter_column('scans', server_default=None)
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index('ix_referrals_tenant_id_status_qualify_by',
                              ['tenant_id', 'status', 'qualify_by'], unique=False)
    # Count the scans recorded before this column existed.
    bind = op.get_bind()
    touchpoint_id = ("json_extract(e.properties, '$.touchpoint_id')"
                     if bind.dialect.name == 'sqlite' else "(e.properties ->> 'touchpoint_id')")
    op.execute(sa.text(
        "UPDATE touchpoints SET scans = counted.n FROM ("
        f"SELECT e.tenant_id AS tenant_id, {touchpoint_id} AS touchpoint_id, count(*) AS n "
        "FROM events e WHERE e.type = 'qr_scan' GROUP BY e.tenant_id, 2) AS counted "
        "WHERE touchpoints.tenant_id = counted.tenant_id "
        "AND touchpoints.id = counted.touchpoint_id"))

def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_tenant_id_status_qualify_by')
    with op.batch_alter_table('touchpoints', schema=None) as batch_op:
        batch_op.drop_column('retired_at')
        batch_op.drop_column('scans')
