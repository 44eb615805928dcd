"""Catalogue imports: product keys, columns and material assignments, tenant settings, import records.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("settings", JSONB, nullable=False, server_default="{}"))
    op.add_column("products", sa.Column("key", sa.String(64)))
    # A PIM-ID over 64 characters (one a rollback of this revision kept) gets a hash suffix, as
    # keys.product_key gives it.
    op.execute(
        "UPDATE products SET key = CASE WHEN length(pim_id) <= 64 THEN pim_id ELSE left(pim_id, 51) || '-' || "
        "left(encode(sha256(convert_to(pim_id, 'UTF8')), 'hex'), 12) END"
    )
    op.alter_column("products", "key", nullable=False)
    op.create_unique_constraint("products_tenant_id_key_key", "products", ["tenant_id", "key"])
    op.alter_column("products", "pim_id", type_=sa.String(200))
    op.add_column("products", sa.Column("category_key", sa.String(200)))
    op.add_column("products", sa.Column("lagertyp", sa.String(200)))
    op.add_column("products", sa.Column("source_file", sa.String(255)))
    # Part name → material name as the catalogue wrote it; the CAD stage resolves it.
    op.add_column("products", sa.Column("materials", JSONB, nullable=False, server_default="{}"))
    op.create_table(
        "catalog_imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("counts", JSONB, nullable=False, server_default="{}"),
        sa.Column("outcomes", JSONB, nullable=False, server_default="{}"),
        sa.Column("report_path", sa.Text),
        # Set once the upload sensor has requested media runs for the products this import linked.
        sa.Column("dispatched", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_imports")
    for column in ("materials", "source_file", "lagertyp", "category_key"):
        op.drop_column("products", column)
    op.drop_constraint("products_tenant_id_key_key", "products")
    op.drop_column("products", "key")
    # products.pim_id stays String(200): narrowing it back to 64 fails on any longer PIM-ID (and
    # truncating would lose and collide them); the code of 0001 reads the wider column as well.
    op.drop_column("tenants", "settings")
