"""attempt_ranks, log_lines.node_rank: one report stream per node rank of a multi-node attempt

Each node rank past 0 of an attempt has its own supervisor, numbered report
batches and heartbeat (``attempt_ranks``, a row per rank from its placement);
rank 0's stay on the attempt row. A log line records the rank that sent it;
lines stored before this are rank 0's.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempt_ranks',
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('last_heartbeat', sa.Float(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('attempt_id', 'rank')
    )
    with op.batch_alter_table('log_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node_rank', sa.SmallInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('log_lines', schema=None) as batch_op:
        batch_op.drop_column('node_rank')
    op.drop_table('attempt_ranks')
