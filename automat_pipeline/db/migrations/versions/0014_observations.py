"""Durations for /metrics: conversions, renders, upload sensor ticks, as Prometheus histograms.

One row per (metric, step, tenant): the count, the sum and a count per bucket (``repository.BUCKETS``,
the last one +Inf), incremented in place by the process that did the work, so every API worker
serves the same monotonic figures and no scrape reads more than a few rows. Not tenant data (no
row-level security): the API's role reads it for /metrics.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "observations",
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("buckets", ARRAY(sa.BigInteger), nullable=False),
    )
    op.execute("GRANT SELECT ON observations TO automat_app")


def downgrade() -> None:
    op.drop_table("observations")
