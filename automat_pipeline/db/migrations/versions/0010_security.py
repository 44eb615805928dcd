"""Row-level security without a bypass the API's role could set, and narrow paths for what must
cross tenants: login, tokens, the state of a user, global administration, the launch loop.

Before: every policy let ``app.bypass_rls = 'on'`` through, a setting the API's role ``automat_app``
could set itself, after which it read every tenant's rows and password hashes. Now the policies
know only the session's tenant (``app.current_tenant_id``); what must cross tenants is a
security-definer function owned by the table owner, each doing one narrow thing:

- ``automat_login_salt(email)``/``automat_login(email, digest)``: login without the role ever
  reading a password hash (it gets the argon2 parameters and salt, computes the digest, and the
  database compares); the column ``users.password_hash`` is no longer readable by the role.
- ``automat_user_state(id)``: one indexed read per request (active, role, tenant, token version,
  the tenant's own state), so deactivation and demotion take effect at once.
- refresh tokens (table closed to the role): issue, use once, revoke a whole family when a used
  token comes back; signing a user out everywhere (every refresh token, and every access token by
  raising the user's token version).
- login failures (table closed to the role): record, count per account and per client address.
- global administration: list and create tenants, create a global admin.
- the launch loop: submitted orders with lines not launched yet, per tenant.

E-mail addresses are compared in one normal form (NFKC, case-folded in Python: ``email_normalized``),
unique across tenants. Tenants get ``active``; users a ``token_version``.

Revision ID: 0010
Revises: 0009
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APP = "automat_app"
TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::int"
BYPASS = "current_setting('app.bypass_rls', true) = 'on' OR "
TENANT_TABLES = [
    "products",
    "product_files",
    "catalog_imports",
    "materials",
    "material_aliases",
    "output_types",
    "media_assets",
    "users",
    "orders",
    "order_lines",
    "uploads",
    "workflows",
]
USER_COLUMNS = "id, tenant_id, email, email_normalized, role, active, token_version, created_at"

FUNCTIONS = {
    "automat_login_salt(p_email text)": """RETURNS text LANGUAGE sql STABLE AS $$
        SELECT left(password_hash, length(password_hash) - position('$' in reverse(password_hash)))
        FROM users u WHERE u.email_normalized = p_email $$""",
    "automat_login(p_email text, p_digest text)": """
        RETURNS TABLE(id int, role text, tenant_id int, token_version int, active boolean, tenant_active boolean)
        LANGUAGE sql STABLE AS $$
        SELECT u.id, u.role::text, u.tenant_id, u.token_version, u.active, coalesce(t.active, true)
        FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id
        WHERE u.email_normalized = p_email
          AND right(u.password_hash, position('$' in reverse(u.password_hash)) - 1) = p_digest $$""",
    "automat_user_state(p_user int)": """
        RETURNS TABLE(active boolean, role text, tenant_id int, token_version int, tenant_active boolean)
        LANGUAGE sql STABLE AS $$
        SELECT u.active, u.role::text, u.tenant_id, u.token_version, coalesce(t.active, true)
        FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id = p_user $$""",
    "automat_refresh_issue(p_user int, p_hash text, p_family text, p_expires timestamptz)": """
        RETURNS void LANGUAGE sql AS $$
        INSERT INTO refresh_tokens (user_id, token_sha256, family, expires_at)
        VALUES (p_user, p_hash, p_family, p_expires) $$""",
    "automat_refresh_use(p_hash text)": """RETURNS TABLE(status text, user_id int, family text)
        LANGUAGE plpgsql AS $$
        DECLARE t refresh_tokens;
        BEGIN
            SELECT * INTO t FROM refresh_tokens r WHERE r.token_sha256 = p_hash FOR UPDATE;
            IF NOT FOUND THEN
                RETURN QUERY SELECT 'unknown'::text, NULL::int, NULL::text; RETURN;
            END IF;
            IF t.used_at IS NOT NULL OR t.revoked_at IS NOT NULL THEN
                UPDATE refresh_tokens r SET revoked_at = coalesce(r.revoked_at, now()) WHERE r.family = t.family;
                RETURN QUERY SELECT 'reused'::text, t.user_id, t.family::text; RETURN;
            END IF;
            IF t.expires_at <= now() THEN
                RETURN QUERY SELECT 'expired'::text, t.user_id, t.family::text; RETURN;
            END IF;
            UPDATE refresh_tokens r SET used_at = now() WHERE r.id = t.id;
            RETURN QUERY SELECT 'ok'::text, t.user_id, t.family::text;
        END $$""",
    "automat_sign_out(p_user int)": """RETURNS void LANGUAGE sql AS $$
        UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = p_user AND revoked_at IS NULL;
        UPDATE users SET token_version = token_version + 1 WHERE id = p_user $$""",
    "automat_login_failed(p_email text, p_address text)": """RETURNS void LANGUAGE sql AS $$
        INSERT INTO login_failures (email_normalized, client_address) VALUES (p_email, p_address) $$""",
    "automat_login_succeeded(p_email text)": """RETURNS void LANGUAGE sql AS $$
        DELETE FROM login_failures WHERE email_normalized = p_email AND at > now() - interval '1 day' $$""",
    "automat_login_failures(p_email text, p_address text, p_window interval)": """
        RETURNS TABLE(by_account bigint, by_address bigint, account_since timestamptz, address_since timestamptz)
        LANGUAGE sql STABLE AS $$
        SELECT (SELECT count(*) FROM login_failures WHERE email_normalized = p_email AND at > now() - p_window),
               (SELECT count(*) FROM login_failures WHERE client_address = p_address AND at > now() - p_window),
               (SELECT min(at) FROM login_failures WHERE email_normalized = p_email AND at > now() - p_window),
               (SELECT min(at) FROM login_failures WHERE client_address = p_address AND at > now() - p_window) $$""",
    "automat_tenants()": """RETURNS TABLE(id int, slug text, name text, active boolean) LANGUAGE sql STABLE AS $$
        SELECT id, slug::text, name::text, active FROM tenants ORDER BY id $$""",
    "automat_create_tenant(p_slug text, p_name text)": """RETURNS int LANGUAGE sql AS $$
        INSERT INTO tenants (slug, name, settings) VALUES (p_slug, p_name, '{}') RETURNING id $$""",
    "automat_create_global_admin(p_email text, p_normalized text, p_hash text)": """RETURNS int LANGUAGE sql AS $$
        INSERT INTO users (tenant_id, email, email_normalized, password_hash, role)
        VALUES (NULL, p_email, p_normalized, p_hash, 'global_admin') RETURNING id $$""",
    "automat_pending_orders()": """RETURNS TABLE(order_id int, tenant_id int) LANGUAGE sql STABLE AS $$
        SELECT o.id, o.tenant_id FROM orders o
        WHERE o.status = 'submitted'
          AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id AND l.run_id IS NULL)
        ORDER BY o.id $$""",
}


def _normal(email: str) -> str:
    return unicodedata.normalize("NFKC", email).casefold()


def upgrade() -> None:
    op.add_column("tenants", sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
    op.add_column("users", sa.Column("email_normalized", sa.String(320)))
    op.add_column("users", sa.Column("token_version", sa.Integer, nullable=False, server_default="0"))
    bind = op.get_bind()
    for user_id, email in bind.execute(sa.text("SELECT id, email FROM users")):
        bind.execute(
            sa.text("UPDATE users SET email_normalized = :n WHERE id = :i"), {"n": _normal(email), "i": user_id}
        )
    op.alter_column("users", "email_normalized", nullable=False)
    op.drop_index("users_email", "users")
    op.create_index("users_email_normalized", "users", ["email_normalized"], unique=True)

    op.add_column("refresh_tokens", sa.Column("family", sa.String(64)))
    op.execute("UPDATE refresh_tokens SET family = token_sha256")
    op.alter_column("refresh_tokens", "family", nullable=False)
    op.add_column("refresh_tokens", sa.Column("revoked_at", sa.DateTime(timezone=True)))
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("email_normalized", sa.String(320), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("login_failures_account", "login_failures", ["email_normalized", "at"])
    op.create_index("login_failures_address", "login_failures", ["client_address", "at"])

    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )
    op.execute("DROP POLICY tenant_isolation ON tenants")
    op.execute(f"CREATE POLICY tenant_isolation ON tenants USING (id = {TENANT})")

    for table in ("refresh_tokens", "login_failures"):
        op.execute(f"REVOKE ALL ON {table} FROM {APP}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")  # and no policy: nothing for the role
    op.execute(f"REVOKE ALL ON users FROM {APP}")
    op.execute(f"GRANT SELECT ({USER_COLUMNS}), UPDATE (role, active, token_version) ON users TO {APP}")
    op.execute(f"GRANT INSERT ({USER_COLUMNS}, password_hash) ON users TO {APP}")
    op.execute(f"REVOKE UPDATE, INSERT, DELETE ON tenants FROM {APP}")
    op.execute(f"GRANT UPDATE (name, settings) ON tenants TO {APP}")

    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"ALTER FUNCTION {signature} SECURITY DEFINER SET search_path = public, pg_temp")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP}")


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute(f"REVOKE ALL ON users, tenants FROM {APP}")  # and the column grants below with them
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON users, tenants, refresh_tokens TO {APP}")
    for table in ("refresh_tokens", "login_failures"):
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY tenant_isolation ON tenants")
    op.execute(f"CREATE POLICY tenant_isolation ON tenants USING ({BYPASS}id = {TENANT})")
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        visible = f"{BYPASS}tenant_id = {TENANT}"
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({visible}) WITH CHECK ({visible})")
    op.drop_table("login_failures")
    op.drop_index("refresh_tokens_family", "refresh_tokens")
    op.drop_column("refresh_tokens", "revoked_at")
    op.drop_column("refresh_tokens", "family")
    op.drop_index("users_email_normalized", "users")
    op.create_index("users_email", "users", [sa.text("lower(email)")], unique=True)
    op.drop_column("users", "token_version")
    op.drop_column("users", "email_normalized")
    op.drop_column("tenants", "active")
