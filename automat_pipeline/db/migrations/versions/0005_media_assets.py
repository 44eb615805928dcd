"""Media assets: the latest outcome of each render of a product (completed, failed or cancelled).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_assets",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("output_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("error_class", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant_id", "product_id", "asset", "output_type"),
    )
    op.create_index("media_assets_tenant_newest", "media_assets", ["tenant_id", sa.text("updated_at DESC")])


def downgrade() -> None:
    op.drop_table("media_assets")
