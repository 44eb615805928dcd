"""The code location: every asset, job, sensor and resource, in one place.

The Dagster glue lives under ``defs/``, a folder per domain (``catalog``, ``cad``, ``render``,
``templates``, ``uploads``, ``orders``, ``notify``); resources read their configuration from the
environment (``EnvVar``), so the same definitions serve local runs and production.
"""

from dagster import Definitions, EnvVar, in_process_executor

from automat_pipeline.defs.cad.assets import cad_conversion, glb_export, step_file
from automat_pipeline.defs.catalog.assets import catalog_report, product_catalog
from automat_pipeline.defs.jobs import import_catalog_job, product_media_job, product_renders_job
from automat_pipeline.defs.notify.schedules import daily_digests, hourly_digests, notification_digests
from automat_pipeline.defs.notify.sensors import pipeline_events
from automat_pipeline.defs.orders.sensor import order_lines
from automat_pipeline.defs.render.assets import blend_export, still, thumbnail, turntable
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.defs.templates.check import check_template_job
from automat_pipeline.defs.uploads.sensor import upload_sensor

defs = Definitions(
    assets=[
        product_catalog,
        catalog_report,
        step_file,
        cad_conversion,
        glb_export,
        thumbnail,
        still,
        turntable,
        blend_export,
    ],
    jobs=[import_catalog_job, product_media_job, product_renders_job, check_template_job, notification_digests],
    sensors=[upload_sensor, order_lines, pipeline_events],
    schedules=[hourly_digests, daily_digests],
    # Every run in one worker process, the API's and backfills' too: a process per step costs seconds
    # to start, and a run whose worker dies takes its Blender and conversion children with it.
    executor=in_process_executor,
    resources={
        "database": Database(url=EnvVar("AUTOMAT_DATABASE_URL")),
        "media": MediaStore(uploads_dir=EnvVar("AUTOMAT_UPLOADS_DIR"), media_dir=EnvVar("AUTOMAT_MEDIA_DIR")),
        "blender": Blender(executable=EnvVar("AUTOMAT_BLENDER"), scripts_dir=EnvVar("AUTOMAT_BLENDER_SCRIPTS")),
    },
)
