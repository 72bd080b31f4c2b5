"""metric_chunks: metric points stored as one blob per series per report batch

A row per point cost ~60 bytes and one index entry (with the metric's name)
per point; ingestion was bound by SQLite's per-row insert cost and a long
series' first read by row decoding. A chunk holds a batch's points of one
series as four float64 columns (db/series.py). Existing points are moved
into chunks of at most 50,000 points, in their order.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

CHUNK = 50_000


def upgrade() -> None:
    op.create_table('metric_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('points', sa.LargeBinary(), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=False),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.Column('last_epoch', sa.Integer(), nullable=True),
    sa.Column('last_t', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metric_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_metric_chunks_series', ['job_id', 'name', 'id'], unique=False)

    conn = op.get_bind()
    old = sa.table('metrics', sa.column('id'), sa.column('job_id'), sa.column('attempt_id'), sa.column('name'),
                   sa.column('value'), sa.column('step'), sa.column('epoch'), sa.column('t'))
    new = sa.table('metric_chunks', sa.column('job_id'), sa.column('attempt_id'), sa.column('name'),
                   sa.column('n'), sa.column('points'), sa.column('last_value'), sa.column('last_step'),
                   sa.column('last_epoch'), sa.column('last_t'))
    # series in the order they began, so a job's chunks keep its attempts' order
    series = conn.execute(
        sa.select(old.c.job_id, old.c.attempt_id, old.c.name, sa.func.min(old.c.id).label('first'))
        .group_by(old.c.job_id, old.c.attempt_id, old.c.name).order_by(sa.text('first'))
    ).all()
    if series:
        import numpy as np  # only when there are points to move: a fresh start need not import it
    for job_id, attempt_id, name, _first in series:
        rows = conn.execute(
            sa.select(old.c.value, old.c.step, old.c.epoch, old.c.t)
            .where(old.c.job_id == job_id, old.c.attempt_id == attempt_id, old.c.name == name).order_by(old.c.id)
        ).all()
        for i in range(0, len(rows), CHUNK):
            part = rows[i:i + CHUNK]
            cols = np.array([tuple(r) for r in part], dtype='<f8').T  # None (no step/epoch) becomes NaN
            value, step, epoch, t = part[-1]
            conn.execute(new.insert().values(
                job_id=job_id, attempt_id=attempt_id, name=name, n=len(part),
                points=np.ascontiguousarray(cols).tobytes(), last_value=value, last_step=step, last_epoch=epoch,
                last_t=t))

    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_series')
    op.drop_table('metrics')


def downgrade() -> None:
    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=True),
    sa.Column('t', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_series', ['job_id', 'name', 'id'], unique=False)

    import numpy as np

    conn = op.get_bind()
    chunks = sa.table('metric_chunks', sa.column('id'), sa.column('job_id'), sa.column('attempt_id'),
                      sa.column('name'), sa.column('n'), sa.column('points'))
    old = sa.table('metrics', sa.column('job_id'), sa.column('attempt_id'), sa.column('name'), sa.column('value'),
                   sa.column('step'), sa.column('epoch'), sa.column('t'))
    for job_id, attempt_id, name, n, blob in conn.execute(
            sa.select(chunks.c.job_id, chunks.c.attempt_id, chunks.c.name, chunks.c.n, chunks.c.points)
            .order_by(chunks.c.id)).all():
        value, step, epoch, t = np.frombuffer(bytes(blob), dtype='<f8').reshape(4, n).tolist()
        conn.execute(old.insert(), [
            {"job_id": job_id, "attempt_id": attempt_id, "name": name, "value": v,
             "step": None if s != s else int(s), "epoch": None if e != e else int(e), "t": tt}
            for v, s, e, tt in zip(value, step, epoch, t)])

    with op.batch_alter_table('metric_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_chunks_series')
    op.drop_table('metric_chunks')
