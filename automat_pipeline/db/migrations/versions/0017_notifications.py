"""Notifications: events (the outbox), per-user notifications and preferences, webhooks, deliveries,
and the audit trail.

- ``events``: one append-only row per thing that happened, unique by an idempotency ``key`` (a
  re-evaluated sensor or a restarted daemon writes nothing twice); tenant-scoped, NULL for the
  system's own (staff alerts for global admins). ``event_queue`` holds the ids the deliverer has
  not fanned out yet: written in the same transaction as the event, consumed once.
- ``notifications``: one message to one user (an order summary, an import summary, an alert, a
  digest); visible only to a transaction that names that user (``app.current_user_id``) within its
  tenant, so neither another tenant nor another client of the same tenant sees it.
- ``notification_preferences``: per user, category and channel: immediate, hourly, daily, never.
- ``webhooks`` per tenant; ``deliveries``: every e-mail and webhook POST with its attempts.
- ``audit_log``: who changed what; the API's role may insert and read rows, never change them.
  Global admins read every tenant's through ``automat_audit``.
- ``order_lines_ended``: lines that ended, by time (the deliverer's hourly failure rate per tenant).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

APP = "automat_app"
TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::int"
USER = "NULLIF(current_setting('app.current_user_id', true), '')::int"
OWN = f"user_id = {USER} AND (tenant_id IS NULL OR tenant_id = {TENANT})"  # a user's own rows
AUDIT = """CREATE FUNCTION automat_audit(p_before bigint, p_limit int, p_tenant int, p_actor int, p_action text,
        p_object text, p_since timestamptz, p_until timestamptz) RETURNS SETOF audit_log
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM audit_log a
    WHERE (p_before IS NULL OR a.id < p_before) AND (p_tenant IS NULL OR a.tenant_id = p_tenant)
      AND (p_actor IS NULL OR a.actor_id = p_actor) AND (p_action IS NULL OR a.action = p_action)
      AND (p_object IS NULL OR a.object = p_object) AND (p_since IS NULL OR a.at >= p_since)
      AND (p_until IS NULL OR a.at < p_until)
    ORDER BY a.id DESC LIMIT p_limit $$"""  # global admins: every tenant's rows and the system's


def _tenant(nullable: bool = False) -> sa.Column:
    return sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, primary_key=True),
        _tenant(nullable=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("owner_id", sa.Integer),  # whose thing it is (an order's creator, an uploader): clients see theirs
        sa.Column("actor_id", sa.Integer),  # who did it; NULL: the pipeline
        sa.Column("data", JSONB, nullable=False, server_default="{}"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("events_tenant_newest", "events", ["tenant_id", sa.text("id DESC")])
    op.create_index("events_tenant_owner_newest", "events", ["tenant_id", "owner_id", sa.text("id DESC")])
    op.create_index("events_tenant_subject_newest", "events", ["tenant_id", "subject", sa.text("id DESC")])
    op.create_table(
        "event_queue",
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger, primary_key=True),
        _tenant(nullable=True),  # NULL: a global admin's
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("events.id", ondelete="CASCADE")),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("shown_at", sa.DateTime(timezone=True)),  # NULL: waiting for an in-app digest, or never shown
        sa.Column("digest", sa.String(8)),  # hourly | daily: waits for that in-app digest
        sa.Column("digest_id", sa.BigInteger),  # the digest notification that carried it
        sa.Column("read_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "notifications_user_shown",
        "notifications",
        ["user_id", sa.text("id DESC")],
        postgresql_where=sa.text("shown_at IS NOT NULL"),
    )
    op.create_index(
        "notifications_user_unread",
        "notifications",
        ["user_id"],
        postgresql_where=sa.text("shown_at IS NOT NULL AND read_at IS NULL"),
    )
    op.create_index(
        "notifications_waiting_digest",
        "notifications",
        ["digest", "user_id"],
        postgresql_where=sa.text("digest IS NOT NULL AND digest_id IS NULL"),
    )
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        _tenant(nullable=True),
        sa.Column("category", sa.String(16), primary_key=True),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.CheckConstraint("category IN ('orders', 'imports', 'alerts')", name="category"),
        sa.CheckConstraint("channel IN ('in_app', 'email')", name="channel"),
        sa.CheckConstraint("mode IN ('immediate', 'hourly', 'daily', 'never')", name="mode"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer, primary_key=True),
        _tenant(),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", JSONB, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("description", sa.String(200), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_by", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("webhooks_tenant", "webhooks", ["tenant_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True),
        _tenant(nullable=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("notification_id", sa.BigInteger, sa.ForeignKey("notifications.id", ondelete="CASCADE")),
        sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id", ondelete="CASCADE")),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("events.id", ondelete="CASCADE")),
        sa.Column("target", sa.Text, nullable=False),  # the address or the URL
        sa.Column("payload", JSONB),  # a digest e-mail's subject and body
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("digest", sa.String(8)),  # hourly | daily: waits for that e-mail digest
        sa.Column("batch_id", sa.BigInteger),  # the digest e-mail that carried it
        sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("log", JSONB, nullable=False, server_default="[]"),  # every attempt: when, status, error, ms
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("channel IN ('email', 'webhook')", name="channel"),
        sa.CheckConstraint("state IN ('pending', 'digest', 'batched', 'sent', 'failed')", name="state"),
    )
    op.create_index("deliveries_due", "deliveries", ["next_attempt_at"], postgresql_where=sa.text("state = 'pending'"))
    op.create_index("deliveries_webhook_newest", "deliveries", ["webhook_id", sa.text("id DESC")])
    op.create_index(
        "deliveries_waiting_digest", "deliveries", ["digest", "target"], postgresql_where=sa.text("state = 'digest'")
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True),
        _tenant(nullable=True),  # NULL: the system's (tenants, global admins, operators' commands)
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor_id", sa.Integer),  # no foreign key: the trail outlives its users
        sa.Column("actor", sa.String(320)),  # a CLI command's operator (cli:<login>)
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("object", sa.String(200)),
        sa.Column("summary", JSONB, nullable=False, server_default="{}"),
        sa.Column("request_id", sa.String(64)),
        sa.CheckConstraint("source IN ('api', 'cli')", name="source"),
    )
    op.create_index("audit_log_tenant_newest", "audit_log", ["tenant_id", sa.text("id DESC")])
    op.create_index("audit_log_tenant_actor_newest", "audit_log", ["tenant_id", "actor_id", sa.text("id DESC")])

    op.create_index(  # the deliverer's look at each tenant's failure rate of the last hour
        "order_lines_ended",
        "order_lines",
        ["ended_at"],
        postgresql_where=sa.text("state IN ('completed', 'failed')"),
    )

    for table in ("events", "webhooks", "deliveries"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )
    for table in ("notifications", "notification_preferences"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY own_rows ON {table} USING ({OWN}) WITH CHECK ({OWN})")
    op.execute("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_reads ON audit_log FOR SELECT USING (tenant_id = {TENANT})")
    op.execute(
        f"CREATE POLICY tenant_or_system_writes ON audit_log FOR INSERT WITH CHECK "
        f"(tenant_id IS NULL OR tenant_id = {TENANT})"  # a global admin's action on no tenant is the system's
    )

    op.execute(f"GRANT SELECT, INSERT ON events, audit_log TO {APP}")  # appended to, never changed
    op.execute(f"GRANT INSERT ON event_queue TO {APP}")
    op.execute(f"GRANT SELECT, UPDATE (read_at) ON notifications TO {APP}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON notification_preferences, webhooks TO {APP}")
    op.execute(f"GRANT SELECT ON deliveries TO {APP}")
    op.execute(f"GRANT USAGE ON SEQUENCE events_id_seq, audit_log_id_seq, webhooks_id_seq TO {APP}")
    op.execute(AUDIT)
    signature = "automat_audit(bigint, int, int, int, text, text, timestamptz, timestamptz)"
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP}")


def downgrade() -> None:
    op.drop_index("order_lines_ended", "order_lines")
    op.execute("DROP FUNCTION automat_audit(bigint, int, int, int, text, text, timestamptz, timestamptz)")
    for table in (
        "audit_log",
        "deliveries",
        "webhooks",
        "notification_preferences",
        "notifications",
        "event_queue",
        "events",
    ):
        op.drop_table(table)
