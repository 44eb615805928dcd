"""The pipeline's runs under row-level security: role ``automat_pipeline``.

Run workers connect as the tables' owner, to whom the policies do not apply. A step that works for
one tenant's partition takes ``SET LOCAL ROLE automat_pipeline`` with ``app.current_tenant_id`` set
(``Database.session(tenant=…)``), so the same ``tenant_isolation`` policies that bind the API's role
bind it too: a query in a run that forgets its tenant filter sees its own tenant's rows only. The
role has no login (only the owner takes it), reads no account secrets (users, tokens, login
failures, password resets, webhooks' secrets), and writes the render hosts' status and the duration
histograms, which belong to no tenant. Sensors, the run queue and the CLI, which work across
tenants by design, stay the owner.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ROLE = "automat_pipeline"
CLOSED = ("alembic_version", "users", "refresh_tokens", "login_failures", "password_resets", "webhooks", "deliveries")


def upgrade() -> None:
    op.execute(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
            CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        END IF; END $$""")
    op.execute(f"GRANT {ROLE} TO CURRENT_USER")  # the owner (run workers) takes it with SET ROLE
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")
    op.execute(f"REVOKE ALL ON {', '.join(CLOSED)} FROM {ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON tenants FROM {ROLE}")
    op.execute(f"CREATE POLICY pipeline_hosts ON render_hosts TO {ROLE} USING (true) WITH CHECK (true)")


def downgrade() -> None:
    op.execute("DROP POLICY pipeline_hosts ON render_hosts")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE {ROLE} FROM CURRENT_USER")  # the role stays: other databases of the server may use it
