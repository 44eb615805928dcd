"""Indexes for the API's product search and media browser (measured in bench/results/api.json).

Trigram indexes make ``ILIKE '%words%'`` on product names and PIM-IDs an index lookup (pg_trgm is
a trusted extension: the database owner may create it). Under row-level security the planner may
not use them (ILIKE is not leakproof, so it must run after the policy, on every row of the
tenant): ``product_search`` runs the search as the owner, restricted to the tenant of the
session's ``app.current_tenant_id``, the same setting the policies read. The media browser pages
newest first per tenant, and joins media to products by product.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX products_name_trgm ON products USING gin (name gin_trgm_ops)")
    op.execute("CREATE INDEX products_pim_id_trgm ON products USING gin (pim_id gin_trgm_ops)")
    op.execute("CREATE INDEX products_tenant_category ON products (tenant_id, category_key)")
    op.execute("CREATE INDEX products_tenant_lagertyp ON products (tenant_id, lagertyp)")
    op.execute("DROP INDEX media_assets_tenant_newest")
    op.execute("CREATE INDEX media_assets_tenant_newest ON media_assets (tenant_id, updated_at DESC, id DESC)")
    op.execute("CREATE INDEX media_assets_product ON media_assets (product_id)")
    op.execute("""CREATE FUNCTION product_search(pattern text) RETURNS SETOF integer
        LANGUAGE sql STABLE SECURITY DEFINER ROWS 20 SET search_path = public AS $$
        SELECT id FROM products
        WHERE tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::int
          AND (name ILIKE pattern OR pim_id ILIKE pattern) $$""")
    op.execute("REVOKE ALL ON FUNCTION product_search(text) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION product_search(text) TO automat_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION product_search(text)")
    for index in (
        "products_name_trgm",
        "products_pim_id_trgm",
        "products_tenant_category",
        "products_tenant_lagertyp",
        "media_assets_product",
    ):
        op.execute(f"DROP INDEX {index}")
    op.execute("DROP INDEX media_assets_tenant_newest")
    op.execute("CREATE INDEX media_assets_tenant_newest ON media_assets (tenant_id, updated_at DESC)")
