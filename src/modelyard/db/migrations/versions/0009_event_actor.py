"""events.actor: the name of the user who asked for a change

Stop, restart, clone and submit record who asked (an admin stopping another
user's job shows as that admin); the platform's own changes (placement, the
supervisor's reports, retries) leave it empty.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('actor')
