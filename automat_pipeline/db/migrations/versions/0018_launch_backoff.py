"""Launch backoff: when a line's last failed launch was, so the launch loop waits before the next.

``order_lines.launch_attempted_at`` with ``launch_attempts``: a line whose launch Dagster refused
waits 10 s, then 20, 40, 80 s (``api.launcher.backoff``) instead of being tried every pass, and
fails with the reason after five attempts.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("launch_attempted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("order_lines", "launch_attempted_at")
