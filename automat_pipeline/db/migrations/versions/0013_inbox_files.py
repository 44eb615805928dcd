"""What the upload sensor knows, and the indexes its look-ups need at 100k products.

``inbox_files``: each file's last seen stat fingerprint (size, modification and change time,
inode) and its sha256, so a tick re-hashes only files whose fingerprint moved, and notices a
content change whatever the modification time says (``cp -p``, ``rsync -a``, unzip: the change
time and inode still move). Keyed by the inbox folder's name: files of a tenant that does not
exist yet are not recorded, so they stay new until it does.

``media_requests``: per product, the inputs (STEP content, materials) of the media chain last
requested for it, so the same inputs never run twice whatever triggers them.

Both carry the sensor tick (``upload_sensor_ticks``) that wrote them; the sensor's cursor names the
last tick whose runs Dagster took, so what a lost tick wrote is taken up again.

Indexes: products by STEP file name (one look-up for all new STEP files of a tenant).
``catalog_imports.dispatch_error``: why requesting an import's media runs failed (retried each tick).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_files",
        sa.Column("folder", sa.String(64), primary_key=True),
        sa.Column("filename", sa.String(255), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("ctime_ns", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("changed_tick", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "media_requests",
        sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("media_key", sa.String(64), nullable=False),
        sa.Column("tick", sa.BigInteger, nullable=False),
    )
    op.create_index("media_requests_tick", "media_requests", ["tick"])
    op.execute("CREATE SEQUENCE upload_sensor_ticks")
    op.create_index("products_tenant_step_filename", "products", ["tenant_id", "step_filename"])
    op.add_column("catalog_imports", sa.Column("dispatch_error", sa.Text))


def downgrade() -> None:
    op.drop_column("catalog_imports", "dispatch_error")
    op.drop_index("products_tenant_step_filename", "products")
    op.execute("DROP SEQUENCE upload_sensor_ticks")
    op.drop_table("media_requests")
    op.drop_table("inbox_files")
