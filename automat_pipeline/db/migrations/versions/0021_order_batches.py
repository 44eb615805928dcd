"""Order batches: lines of one order and output type launched as one Dagster backfill.

``order_lines.batch_id``: the backfill a line was launched in (``api.launcher.launch_batch``),
until the pipeline's ``order_lines`` sensor sees the run that renders its product and sets
``run_id``. The partial index finds a batch's lines still waiting for their run, and
``automat_waiting_batches()`` tells the sensor, which works tenant by tenant under row-level
security, which backfills of which tenants have such lines (security definer, like 0012's).

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


WAITING = """CREATE FUNCTION automat_waiting_batches() RETURNS TABLE(batch_id text, tenant_id int)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT batch_id, tenant_id FROM order_lines
    WHERE batch_id IS NOT NULL AND run_id IS NULL AND state = 'queued' $$"""


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("batch_id", sa.String(64)))
    op.create_index(
        "order_lines_batch_waiting", "order_lines", ["batch_id"], postgresql_where=sa.text("run_id IS NULL")
    )
    op.execute(WAITING)
    op.execute("REVOKE ALL ON FUNCTION automat_waiting_batches() FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION automat_waiting_batches() TO automat_pipeline")


def downgrade() -> None:
    op.execute("DROP FUNCTION automat_waiting_batches()")
    op.drop_index("order_lines_batch_waiting", "order_lines")
    op.drop_column("order_lines", "batch_id")
