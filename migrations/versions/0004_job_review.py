"""job review: the cutout's confidence, needs_review and when it was accepted

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('needs_review', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_confidence'), ['confidence'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_needs_review'), ['needs_review'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_needs_review'))
        batch_op.drop_index(batch_op.f('ix_jobs_confidence'))
        batch_op.drop_column('accepted_at')
        batch_op.drop_column('needs_review')
        batch_op.drop_column('confidence')
