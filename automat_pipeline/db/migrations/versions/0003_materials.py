"""Tenant materials and material aliases (the shipped library lives in automat_pipeline.materials).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "materials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("base_color", JSONB, nullable=False),
        sa.Column("metallic", sa.Float, nullable=False),
        sa.Column("roughness", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.CheckConstraint("metallic BETWEEN 0 AND 1 AND roughness BETWEEN 0 AND 1", name="pbr_range"),
    )
    op.create_table(
        "material_aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("pattern", sa.String(200), nullable=False),
        sa.Column("material_name", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("tenant_id", "pattern"),
    )


def downgrade() -> None:
    op.drop_table("material_aliases")
    op.drop_table("materials")
