"""The sensors and the run queue under row-level security too: role ``automat_pipeline``.

0020 bound the run workers' tenant-scoped transactions. Now the sensors work as that role too, with
``app.current_tenant_id`` set per tenant block (``Database.session``, ``as_tenant``): the upload sensor
per tenant, ``order_lines`` and ``pipeline_events`` per run's tenant; the run queue
(``TenantRunCoordinator``) reads a tenant's retry cap scoped to it and every tenant's render limit
through one function. Migrations, administration (the CLI) and what must read users' addresses and
webhooks' secrets (the deliverer, the digests) keep the owner.

- ``inbox_files`` and ``media_requests`` hold tenants' rows without a tenant column: each gets
  ``tenant_id`` (an inbox file's replaces the folder's name, its tenant's slug, in the key) and the
  ``tenant_isolation`` policy. The API's role reads neither.
- What must cross tenants is a security-definer function granted to the role, each doing one narrow
  thing (as in 0010): ``automat_tenants()`` (0010: id, slug, name, active: whose inbox folder is
  whose); ``automat_undispatched_tenants()``: the active tenants with successful imports whose media
  runs are not requested yet; ``automat_requested_tenants(tick)``: the tenants with media requests
  that ticks after ``tick`` wrote (a lost tick's); ``automat_render_limits()``: each tenant's
  ``max_concurrent_renders`` setting, as written (the run queue validates it).
- The staff alerts (events of no tenant: a worker lost, a run stalled, a GPU host on the CPU) are
  the sensors' to write: the role may add them and read them back (``INSERT … RETURNING``), not
  change them, as it writes the render hosts' status (0020).

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

ROLE = "automat_pipeline"
TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::int"
FUNCTIONS = {
    "automat_undispatched_tenants()": """RETURNS SETOF int LANGUAGE sql STABLE AS $$
        SELECT DISTINCT i.tenant_id FROM catalog_imports i JOIN tenants t ON t.id = i.tenant_id
        WHERE i.status = 'ok' AND NOT i.dispatched AND t.active ORDER BY 1 $$""",
    "automat_requested_tenants(p_tick bigint)": """RETURNS SETOF int LANGUAGE sql STABLE AS $$
        SELECT DISTINCT tenant_id FROM media_requests WHERE tick > p_tick ORDER BY 1 $$""",
    "automat_render_limits()": """RETURNS TABLE(slug text, max_concurrent_renders jsonb) LANGUAGE sql STABLE AS $$
        SELECT slug::text, settings -> 'max_concurrent_renders' FROM tenants ORDER BY slug $$""",
}
TABLES = ("inbox_files", "media_requests")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN tenant_id integer REFERENCES tenants (id) ON DELETE CASCADE")
    op.execute("UPDATE inbox_files f SET tenant_id = t.id FROM tenants t WHERE t.slug = f.folder")
    op.execute("DELETE FROM inbox_files WHERE tenant_id IS NULL")  # a gone tenant's: the sensor records no others
    op.execute("UPDATE media_requests r SET tenant_id = p.tenant_id FROM products p WHERE p.id = r.product_id")
    op.execute("ALTER TABLE inbox_files DROP CONSTRAINT inbox_files_pkey, DROP COLUMN folder")
    op.execute("ALTER TABLE inbox_files ADD CONSTRAINT inbox_files_pkey PRIMARY KEY (tenant_id, filename)")
    op.execute("ALTER TABLE media_requests ALTER COLUMN tenant_id SET NOT NULL")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"ALTER FUNCTION {signature} SECURITY DEFINER SET search_path = public, pg_temp")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {ROLE}")
    op.execute(f"GRANT EXECUTE ON FUNCTION automat_tenants() TO {ROLE}")
    op.execute(f"CREATE POLICY staff_alerts_read ON events FOR SELECT TO {ROLE} USING (tenant_id IS NULL)")
    op.execute(f"CREATE POLICY staff_alerts_written ON events FOR INSERT TO {ROLE} WITH CHECK (tenant_id IS NULL)")


def downgrade() -> None:
    op.execute("DROP POLICY staff_alerts_written ON events")
    op.execute("DROP POLICY staff_alerts_read ON events")
    op.execute(f"REVOKE EXECUTE ON FUNCTION automat_tenants() FROM {ROLE}")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    for table in TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE inbox_files ADD COLUMN folder varchar(64)")
    op.execute("UPDATE inbox_files f SET folder = t.slug FROM tenants t WHERE t.id = f.tenant_id")
    op.execute("ALTER TABLE inbox_files ALTER COLUMN folder SET NOT NULL, DROP CONSTRAINT inbox_files_pkey")
    op.execute("ALTER TABLE inbox_files ADD CONSTRAINT inbox_files_pkey PRIMARY KEY (folder, filename)")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN tenant_id")
