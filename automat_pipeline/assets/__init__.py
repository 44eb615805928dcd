"""Software-defined assets: the catalogue per tenant, CAD and renders per tenant|product."""

from automat_pipeline.assets.cad import convert_step, step_file
from automat_pipeline.assets.catalog import catalog_report, product_catalog
from automat_pipeline.assets.render import blend_export, still, thumbnail, turntable

ALL_ASSETS = [product_catalog, catalog_report, step_file, convert_step, thumbnail, still, turntable, blend_export]
