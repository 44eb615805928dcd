"""Jobs: the catalogue import per tenant, and the media chain per tenant|product."""

from dagster import AssetSelection, define_asset_job

import_catalog_job = define_asset_job(
    "import_catalog",
    selection=AssetSelection.assets("product_catalog", "catalog_report"),
    description="Import a tenant's product lists (by default every workbook in its inbox), then write reports.",
)

product_media_job = define_asset_job(
    "product_media",
    selection=AssetSelection.assets("step_file", "cad_metadata", "glb_geometry", "glb_production", "thumbnail"),
    description="STEP upload → CAD metadata → viewer and production GLB → thumbnail for one tenant|product.",
)

# Production renders cost minutes (a turntable renders every frame): their own job, run on demand
# (orders, operators), not on every upload.
product_renders_job = define_asset_job(
    "product_renders",
    selection=AssetSelection.assets("still", "turntable", "blend_export"),
    description="Stills and turntables of one tenant|product (one per output type of its tenant), and its .blend.",
)
