"""Jobs: the catalogue import per tenant, and the media chain per tenant|product (or a range of them).

Every job runs in one process (the definitions' in-process executor): Dagster's default starts a
process per step (2 s each here), and a run whose worker dies takes its children with it.
"""

from dagster import AssetSelection, define_asset_job

import_catalog_job = define_asset_job(
    "import_catalog",
    selection=AssetSelection.assets("product_catalog", "catalog_report"),
    description="Import a tenant's product lists (by default every workbook in its inbox), then write reports.",
)

# The media chain, step by step (a step may make several assets): a batch run whose step failed for
# some products goes on for the others from the next step (``upload_sensor``).
MEDIA_STEPS = {
    "step_file": ["step_file"],
    "cad_conversion": ["cad_metadata", "glb_geometry", "glb_production"],
    "thumbnail": ["thumbnail"],
}

# A run may cover a range of products (every asset handles ``context.partition_keys``): one worker,
# one OpenCascade forkserver and one warm Blender for all of them.
product_media_job = define_asset_job(
    "product_media",
    selection=AssetSelection.assets(*(asset for assets in MEDIA_STEPS.values() for asset in assets)),
    description="STEP upload → CAD metadata → viewer and production GLB → thumbnail for tenant|product partitions.",
)

# Production renders cost minutes (a turntable renders every frame): their own job, run on demand
# (orders, operators), not on every upload.
product_renders_job = define_asset_job(
    "product_renders",
    selection=AssetSelection.assets("still", "turntable", "blend_export"),
    description="Stills and turntables of one tenant|product (one per output type of its tenant), and its .blend.",
)


def assets_after(step: str) -> list[str]:
    """The media chain's assets downstream of ``step``."""
    steps = list(MEDIA_STEPS)
    return [asset for later in steps[steps.index(step) + 1 :] for asset in MEDIA_STEPS[later]]
