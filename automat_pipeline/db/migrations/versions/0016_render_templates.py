"""Render templates a tenant admin uploads (``render_templates``), under row-level security.

Each row is one uploaded version of a template: ``checking`` until a render host's Blender checked
it (the ``check_template`` job), then ``ok`` (the version renders use; at most one per name) or
``refused`` with the class and reason. ``run_id``, ``launch_error`` and ``launch_attempts`` follow
the check's launch: while Dagster does not answer, the API's launch loop finds the unlaunched
checks of every tenant through ``automat_pending_template_checks()``.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

APP = "automat_app"
TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::int"
PENDING = "automat_pending_template_checks()"


def upgrade() -> None:
    op.create_table(
        "render_templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="checking"),
        sa.Column("error_class", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("report", JSONB, nullable=False, server_default="{}"),
        sa.Column("uploaded_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("launch_error", sa.Text),
        sa.Column("launch_attempts", sa.SmallInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("tenant_id", "name", "sha256"),
        sa.CheckConstraint("status IN ('checking', 'ok', 'refused')", name="status"),
    )
    op.create_index("render_templates_tenant_name", "render_templates", ["tenant_id", "name", "id"])
    op.create_index(
        "render_templates_unlaunched",
        "render_templates",
        ["id"],
        postgresql_where=sa.text("status = 'checking' AND run_id IS NULL"),
    )
    op.execute("ALTER TABLE render_templates ENABLE ROW LEVEL SECURITY")
    visible = f"tenant_id = {TENANT}"
    op.execute(f"CREATE POLICY tenant_isolation ON render_templates USING ({visible}) WITH CHECK ({visible})")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON render_templates TO {APP}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE render_templates_id_seq TO {APP}")
    op.execute(f"""CREATE FUNCTION {PENDING} RETURNS TABLE(template_id int, tenant_id int)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        SELECT id, tenant_id FROM render_templates WHERE status = 'checking' AND run_id IS NULL ORDER BY id $$""")
    op.execute(f"REVOKE ALL ON FUNCTION {PENDING} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {PENDING} TO {APP}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {PENDING}")
    op.drop_table("render_templates")
