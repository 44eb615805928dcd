"""Workflows saved per tenant (JSON documents, see automat_pipeline/workflows.py), under RLS, and
the workflow an order runs.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

VISIBLE = (
    "current_setting('app.bypass_rls', true) = 'on' "
    "OR tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::int"
)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON workflows TO automat_app")
    op.execute("GRANT USAGE, SELECT ON SEQUENCE workflows_id_seq TO automat_app")
    op.execute("ALTER TABLE workflows ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON workflows USING ({VISIBLE}) WITH CHECK ({VISIBLE})")
    op.add_column("orders", sa.Column("workflow", sa.String(64)))


def downgrade() -> None:
    op.drop_column("orders", "workflow")
    op.drop_table("workflows")
