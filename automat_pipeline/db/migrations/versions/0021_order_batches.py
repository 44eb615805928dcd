"""Order batches: lines of one order and output type launched as one Dagster backfill.

``order_lines.batch_id``: the backfill a line was launched in (``api.launcher.launch_batch``),
until the pipeline's ``order_lines`` sensor sees the run that renders its product and sets
``run_id``. The partial index finds a batch's lines still waiting for their run.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("batch_id", sa.String(64)))
    op.create_index(
        "order_lines_batch_waiting", "order_lines", ["batch_id"], postgresql_where=sa.text("run_id IS NULL")
    )


def downgrade() -> None:
    op.drop_index("order_lines_batch_waiting", "order_lines")
    op.drop_column("order_lines", "batch_id")
