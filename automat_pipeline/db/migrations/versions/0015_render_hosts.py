"""render_hosts: each render host's GPU status, written by its warm-up probe and by every render
it serves; read by global admins over the API (``GET /render-hosts``).

Not a tenant table: row-level security lets only the explicit bypass (global admins) read it.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

READ = "automat_render_hosts()"


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
    op.execute("ALTER TABLE render_hosts ENABLE ROW LEVEL SECURITY")  # and no policy: nothing for the API's role
    # Global administration reads it through one narrow function (see 0010); the route checks the role.
    op.execute(
        f"CREATE FUNCTION {READ} RETURNS SETOF render_hosts LANGUAGE sql STABLE AS $$"
        " SELECT * FROM render_hosts ORDER BY name $$"
    )
    op.execute(f"ALTER FUNCTION {READ} SECURITY DEFINER SET search_path = public, pg_temp")
    op.execute(f"REVOKE ALL ON FUNCTION {READ} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {READ} TO automat_app")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {READ}")
    op.drop_table("render_hosts")
