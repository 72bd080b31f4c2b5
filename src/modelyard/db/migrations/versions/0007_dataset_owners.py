"""datasets, dataset_events: a dataset's owner and visibility, and who did what to it

Dataset versions stay the manifests in the artifact store; these tables say who
owns each name (private or public) and record who created or removed a version.
Names already in the store get no row here: the server treats them as the first
admin's, private, until an admin changes that.

Revision ID: 0007
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('visibility', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index('ix_datasets_owner', ['owner_id'], unique=False)
        batch_op.create_index('ix_datasets_visibility', ['visibility'], unique=False)

    op.create_table('dataset_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('time', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dataset_events', schema=None) as batch_op:
        batch_op.create_index('ix_dataset_events_name', ['name', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dataset_events', schema=None) as batch_op:
        batch_op.drop_index('ix_dataset_events_name')
    op.drop_table('dataset_events')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index('ix_datasets_visibility')
        batch_op.drop_index('ix_datasets_owner')
    op.drop_table('datasets')
