"""Accounts self-service: password change and one-time resets, tenants that can be deactivated.

- ``password_resets`` (closed to the API's role, like ``refresh_tokens``): one-time tokens an admin
  issues, stored as their sha256, short-lived, used once; a newer one revokes the older.
- ``automat_password_change(user, digest, hash)``: the new hash only if the current password's
  digest matches (computed as at login: the role never reads a hash); every session of the user
  is revoked (refresh tokens, the token version, pending resets).
- ``automat_password_reset_issue``/``_status``/``_use``: issue a reset token; tell whether one
  can work (before the API spends argon2 on its new password); use one to set the password,
  revoking every session and clearing the account's login throttle.
- ``automat_user_email(user)``: the normalised address of a user (the throttle's key), whatever
  its tenant.
- ``automat_update_tenant(id, name, active)``: rename and (de)activate any tenant; deactivating
  signs every one of its users out (refresh tokens and token versions), so a later reactivation
  revives no old session.
- ``automat_pending_orders()`` leaves out an inactive tenant's orders: the launch loop does not
  touch them (their lines stay pending, the API writes the reason on them).

These functions hold secrets, not authority: which caller may ask for what is the API's check (it
holds the token-signing key anyway), as for the functions of migration 0010.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

APP = "automat_app"
DIGEST = "right(u.password_hash, position('$' in reverse(u.password_hash)) - 1)"  # as automat_login compares
REVOKE_SESSIONS = """
        UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = {user} AND revoked_at IS NULL;
        UPDATE password_resets SET revoked_at = now() WHERE user_id = {user} AND used_at IS NULL AND revoked_at IS NULL;
"""
FUNCTIONS = {
    "automat_user_email(p_user int)": """RETURNS text LANGUAGE sql STABLE AS $$
        SELECT email_normalized::text FROM users WHERE id = p_user $$""",
    "automat_password_change(p_user int, p_digest text, p_hash text)": f"""RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE users u SET password_hash = p_hash, token_version = u.token_version + 1
            WHERE u.id = p_user AND {DIGEST} = p_digest;
            IF NOT FOUND THEN
                RETURN false;
            END IF;
            {REVOKE_SESSIONS.format(user="p_user")}
            RETURN true;
        END $$""",
    "automat_password_reset_issue(p_user int, p_hash text, p_expires timestamptz)": """
        RETURNS void LANGUAGE sql AS $$
        UPDATE password_resets SET revoked_at = now() WHERE user_id = p_user AND used_at IS NULL AND revoked_at IS NULL;
        INSERT INTO password_resets (user_id, token_sha256, expires_at) VALUES (p_user, p_hash, p_expires) $$""",
    "automat_password_reset_status(p_token text)": """RETURNS text LANGUAGE sql STABLE AS $$
        SELECT coalesce((
            SELECT CASE WHEN r.used_at IS NOT NULL THEN 'used' WHEN r.revoked_at IS NOT NULL THEN 'revoked'
                        WHEN r.expires_at <= now() THEN 'expired'
                        WHEN NOT (u.active AND coalesce(t.active, true)) THEN 'inactive' ELSE 'ok' END
            FROM password_resets r JOIN users u ON u.id = r.user_id LEFT JOIN tenants t ON t.id = u.tenant_id
            WHERE r.token_sha256 = p_token), 'unknown') $$""",
    "automat_password_reset_use(p_token text, p_hash text)": f"""RETURNS text LANGUAGE plpgsql AS $$
        DECLARE r password_resets; state text;
        BEGIN
            SELECT * INTO r FROM password_resets p WHERE p.token_sha256 = p_token FOR UPDATE;
            state := automat_password_reset_status(p_token);  -- after the lock: a token is used once
            IF state <> 'ok' THEN
                RETURN state;
            END IF;
            UPDATE password_resets SET used_at = now() WHERE id = r.id;
            UPDATE users SET password_hash = p_hash, token_version = token_version + 1 WHERE id = r.user_id;
            {REVOKE_SESSIONS.format(user="r.user_id")}
            DELETE FROM login_failures
            WHERE email_normalized = (SELECT email_normalized FROM users WHERE id = r.user_id);
            RETURN 'ok';
        END $$""",
    "automat_update_tenant(p_id int, p_name text, p_active boolean)": """
        RETURNS TABLE(id int, slug text, name text, active boolean) LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE was boolean;
        BEGIN
            SELECT t.active INTO was FROM tenants t WHERE t.id = p_id FOR UPDATE;
            IF NOT FOUND THEN
                RETURN;
            END IF;
            UPDATE tenants t SET name = coalesce(p_name, t.name), active = coalesce(p_active, t.active)
            WHERE t.id = p_id;
            IF was AND p_active IS FALSE THEN
                UPDATE refresh_tokens SET revoked_at = now()
                WHERE revoked_at IS NULL AND user_id IN (SELECT u.id FROM users u WHERE u.tenant_id = p_id);
                UPDATE users u SET token_version = u.token_version + 1 WHERE u.tenant_id = p_id;
            END IF;
            RETURN QUERY SELECT t.id, t.slug::text, t.name::text, t.active FROM tenants t WHERE t.id = p_id;
        END $$""",
}
PENDING_ORDERS = """CREATE OR REPLACE FUNCTION automat_pending_orders() RETURNS TABLE(order_id int, tenant_id int)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.id, o.tenant_id FROM orders o {join}
    WHERE o.status = 'submitted'
      AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id AND l.state = 'pending')
    ORDER BY o.id $$"""  # the launch loop's orders: lines still to launch, of active tenants


def upgrade() -> None:
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.execute(f"REVOKE ALL ON password_resets FROM {APP}")
    op.execute("ALTER TABLE password_resets ENABLE ROW LEVEL SECURITY")  # and no policy: nothing for the role
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"ALTER FUNCTION {signature} SECURITY DEFINER SET search_path = public, pg_temp")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP}")
    op.execute(PENDING_ORDERS.format(join="JOIN tenants t ON t.id = o.tenant_id AND t.active"))


def downgrade() -> None:
    op.execute(PENDING_ORDERS.format(join=""))
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_table("password_resets")
