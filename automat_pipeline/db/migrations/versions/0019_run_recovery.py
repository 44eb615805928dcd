"""Run recovery: a retried line in the order's history, and media found by the run that made them.

- ``order_history.event`` may be ``line_retried``: a line whose run lost its worker and which
  Dagster's run retries ran again (the ``order_lines`` sensor writes it).
- ``media_assets (run_id)``: the sensor settles what a run left ``running`` and lists what it
  made, by run, every tick.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

EVENTS = "'submitted', 'rejected', 'resubmitted', 'cancelled', 'line_cancelled'"


def upgrade() -> None:
    op.drop_constraint("event", "order_history")
    op.create_check_constraint("event", "order_history", f"event IN ({EVENTS}, 'line_retried')")
    op.create_index("media_assets_run", "media_assets", ["run_id"])


def downgrade() -> None:
    op.drop_index("media_assets_run", "media_assets")
    op.execute("DELETE FROM order_history WHERE event = 'line_retried'")
    op.drop_constraint("event", "order_history")
    op.create_check_constraint("event", "order_history", f"event IN ({EVENTS})")
