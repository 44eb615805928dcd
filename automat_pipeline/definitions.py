"""The code location: every asset, job, sensor and resource, in one place.

Resources read their configuration from the environment, so the same definitions serve local
runs (``automat_pipeline.embedded`` sets the variables) and production.
"""

from dagster import Definitions, EnvVar

from automat_pipeline.assets import ALL_ASSETS
from automat_pipeline.jobs import import_catalog_job, product_media_job, product_renders_job
from automat_pipeline.resources import Blender, Database, MediaStore
from automat_pipeline.sensors import upload_sensor

defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[import_catalog_job, product_media_job, product_renders_job],
    sensors=[upload_sensor],
    resources={
        "database": Database(url=EnvVar("AUTOMAT_DATABASE_URL")),
        "media": MediaStore(uploads_dir=EnvVar("AUTOMAT_UPLOADS_DIR"), media_dir=EnvVar("AUTOMAT_MEDIA_DIR")),
        "blender": Blender(executable=EnvVar("AUTOMAT_BLENDER"), scripts_dir=EnvVar("AUTOMAT_BLENDER_SCRIPTS")),
    },
)
