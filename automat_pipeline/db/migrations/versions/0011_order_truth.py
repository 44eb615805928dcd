"""Orders that tell the truth: each line's outcome kept in PostgreSQL, order numbers, a history.

- ``order_lines`` keeps its state (pending, queued, running, completed, failed, cancelled), error
  class and reason, progress, outputs and times: the job document answers while Dagster is down,
  survives the run storage's cleanup, and "every failed line of my tenant" is one indexed query.
- ``orders.number``: ``ORD-<year>-<six digits>`` per tenant and year, drawn from
  ``order_numbers`` under a row lock, so concurrent creations never share one.
- ``order_lines.launch_attempts``: launches Dagster refused; a line that can never launch fails.
- ``order_history``: every submission (who, when, which lines), rejection (who, when, why),
  resubmission and cancellation, in order; ``orders.reject_reason`` holds the current one only.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

APP = "automat_app"
TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::int"
PENDING_ORDERS = """CREATE OR REPLACE FUNCTION automat_pending_orders() RETURNS TABLE(order_id int, tenant_id int)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.id, o.tenant_id FROM orders o
    WHERE o.status = 'submitted' AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id AND {condition})
    ORDER BY o.id $$"""  # the launch loop's orders: lines still to launch


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("state", sa.String(16), nullable=False, server_default="pending"))
    op.add_column("order_lines", sa.Column("error_class", sa.String(64)))
    op.add_column("order_lines", sa.Column("reason", sa.Text))
    op.add_column("order_lines", sa.Column("progress", sa.SmallInteger))
    op.add_column("order_lines", sa.Column("outputs", JSONB, nullable=False, server_default="[]"))
    op.add_column("order_lines", sa.Column("started_at", sa.DateTime(timezone=True)))
    op.add_column("order_lines", sa.Column("ended_at", sa.DateTime(timezone=True)))
    op.add_column("order_lines", sa.Column("seconds", sa.Float))
    op.add_column("order_lines", sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.add_column("order_lines", sa.Column("launch_attempts", sa.SmallInteger, nullable=False, server_default="0"))
    op.create_check_constraint(
        "state", "order_lines", "state IN ('pending', 'queued', 'running', 'completed', 'failed', 'cancelled')"
    )
    op.create_index("order_lines_tenant_state", "order_lines", ["tenant_id", "state"])
    op.create_index("order_lines_run", "order_lines", ["run_id"])
    op.create_index("order_lines_order_state", "order_lines", ["order_id", "state"])  # the board's counts
    op.execute("UPDATE order_lines SET state = 'queued' WHERE run_id IS NOT NULL")

    op.create_table(
        "order_numbers",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("year", sa.SmallInteger, primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    op.add_column("orders", sa.Column("number", sa.String(32)))
    op.execute(
        "UPDATE orders o SET number = 'ORD-' || extract(year FROM o.created_at)::int || '-' || "
        "lpad(n.seq::text, 6, '0') FROM (SELECT id, row_number() OVER (PARTITION BY tenant_id, "
        "extract(year FROM created_at) ORDER BY id) AS seq FROM orders) n WHERE n.id = o.id"
    )
    op.execute(
        "INSERT INTO order_numbers (tenant_id, year, last) SELECT tenant_id, extract(year FROM created_at)::int, "
        "count(*) FROM orders GROUP BY 1, 2"
    )
    op.alter_column("orders", "number", nullable=False)
    op.create_unique_constraint("orders_tenant_number", "orders", ["tenant_id", "number"])
    op.create_index("orders_tenant_status_newest", "orders", ["tenant_id", "status", sa.text("id DESC")])
    op.create_index("orders_tenant_creator_newest", "orders", ["tenant_id", "created_by", sa.text("id DESC")])

    op.create_table(
        "order_history",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("by_user", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("reason", sa.Text),
        sa.Column("lines", JSONB, nullable=False, server_default="[]"),
        sa.CheckConstraint(
            "event IN ('submitted', 'rejected', 'resubmitted', 'cancelled', 'line_cancelled')", name="event"
        ),
    )
    op.create_index("order_history_order", "order_history", ["order_id", "id"])

    for table in ("order_numbers", "order_history"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        visible = f"tenant_id = {TENANT}"
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({visible}) WITH CHECK ({visible})")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON order_numbers TO {APP}")
    op.execute(f"GRANT SELECT, INSERT ON order_history TO {APP}")  # a history is only ever added to
    op.execute(f"GRANT USAGE ON SEQUENCE order_history_id_seq TO {APP}")
    op.execute(PENDING_ORDERS.format(condition="l.state = 'pending'"))


def downgrade() -> None:
    op.drop_table("order_history")
    op.drop_index("orders_tenant_creator_newest", "orders")
    op.drop_index("orders_tenant_status_newest", "orders")
    op.drop_constraint("orders_tenant_number", "orders")
    op.drop_column("orders", "number")
    op.drop_table("order_numbers")
    op.drop_index("order_lines_order_state", "order_lines")
    op.drop_index("order_lines_run", "order_lines")
    op.drop_index("order_lines_tenant_state", "order_lines")
    op.drop_constraint("state", "order_lines")
    op.execute(PENDING_ORDERS.format(condition="l.run_id IS NULL"))
    for column in (
        "launch_attempts",
        "updated_at",
        "seconds",
        "ended_at",
        "started_at",
        "outputs",
        "progress",
        "reason",
        "error_class",
        "state",
    ):
        op.drop_column("order_lines", column)
