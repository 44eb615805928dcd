"""render_hosts: each render host's GPU status, written by its warm-up probe and by every render
it serves; read by global admins over the API (``GET /render-hosts``).

Not a tenant table: row-level security lets only the explicit bypass (global admins) read it.

Revision ID: 22a
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "22a"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "render_hosts",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("device", sa.String(200)),
        sa.Column("backend", sa.String(32)),
        sa.Column("driver", sa.String(200)),
        sa.Column("probed_at", sa.DateTime(timezone=True)),
        sa.Column("probe", JSONB, nullable=False, server_default="{}"),
        sa.Column("cache_warm", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("warmed_at", sa.DateTime(timezone=True)),
        sa.Column("gpu_renders", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cpu_renders", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_render_at", sa.DateTime(timezone=True)),
    )
    op.execute("GRANT SELECT ON render_hosts TO automat_app")
    op.execute("ALTER TABLE render_hosts ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY global_admins ON render_hosts USING (current_setting('app.bypass_rls', true) = 'on')")


def downgrade() -> None:
    op.drop_table("render_hosts")
