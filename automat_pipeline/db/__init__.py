"""The domain database: tenants, products and their files, in PostgreSQL."""
