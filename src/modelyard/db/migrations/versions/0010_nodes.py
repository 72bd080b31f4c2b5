"""jobs.nodes, jobs.node_labels, attempts.nodes: placement that knows nodes

A job asks for ``nodes`` nodes (each holding its resources) with the labels in
``node_labels`` (sorted ``k=v`` joined by commas), kept as columns so that the
scheduler reads the queue without parsing specs. An attempt's ``nodes`` is its
allocation, one ``{"node", "gpus", "cores"}`` per node rank (JSON);
``attempts.gpus`` and ``cpuset`` stay rank 0's.

Revision ID: 0010
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nodes', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('node_labels', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nodes', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('nodes')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('node_labels')
        batch_op.drop_column('nodes')
