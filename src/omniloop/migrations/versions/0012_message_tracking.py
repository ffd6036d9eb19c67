"""E-mail open and click tracking on outbox messages.

Revision ID: 0012_message_tracking
Revises: 0011_loops
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0012_message_tracking'
down_revision: str | None = '0011_loops'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('clicks', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('clicks')
        batch_op.drop_column('clicked_at')
        batch_op.drop_column('opened_at')
