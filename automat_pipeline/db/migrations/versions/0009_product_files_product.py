"""An index on product_files.product_id: "which products have converted CAD" (order submission,
product lists, direct renders) looked a product's files up by scanning the whole table.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_product_files_product_id", "product_files", ["product_id"])


def downgrade() -> None:
    op.drop_index("ix_product_files_product_id", "product_files")
