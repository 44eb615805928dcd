"""The check of an uploaded render template, on a render host (where Blender is): job ``check_template``.

The API (which has no Blender) stores the upload and launches this job for the tenant's partition;
its one step is a render step (``tags.RENDER_STEPS``), so the run queue and the routing run launcher
send it where Blender is. The step opens the file in Blender with scripts disabled
(``blender/check_template.py``) and records the outcome (``automat_pipeline.templates.record``).
"""

from dagster import Config, MetadataValue, OpExecutionContext, in_process_executor, job, op
from pydantic import Field

from automat_pipeline import templates
from automat_pipeline.db import repository
from automat_pipeline.defs.failures import classified
from automat_pipeline.defs.partitions import tenant_partitions
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import TEMPLATE_NAME


class TemplateCheckConfig(Config):
    name: str = Field(pattern=TEMPLATE_NAME, description="The template's name.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The uploaded version's content hash.")


def check_upload(
    blender: Blender, database: Database, media: MediaStore, tenant_slug: str, name: str, sha256: str
) -> tuple[str, dict, AutomatError | None]:
    """Check one uploaded version in Blender and record the outcome (the step's work, and ``automat
    template upload``'s): ``(status, report, why Blender reached no verdict)``; status ``superseded``
    when nothing waits for this check any more (a newer upload, a delete)."""
    with database.session(tenant_slug) as session:
        tenant = repository.known_tenant(session, tenant_slug)
        version = templates.waiting(session, tenant.id, name, sha256)
        staged = version and templates.pending_file(media.media_dir, tenant.slug, version.id)
    if version is None:
        return "superseded", {}, None
    failed = None
    if not staged.is_file():
        report = {"problems": [["missing_upload", f"the upload of {name} is gone from {staged.parent}"]]}
    else:
        try:
            report = blender.check_template(staged, name)
        except AutomatError as error:
            failed = error
            report = {"problems": [["check_failed", f"Blender could not check {name}: {error}"]]}
    with database.session(tenant_slug) as session:
        kept = templates.record(session, tenant, name, sha256, media.media_dir, report)
        return (kept.status if kept else "superseded"), report, failed


@op(name=templates.CHECK_STEP)
def template_check(
    context: OpExecutionContext, config: TemplateCheckConfig, blender: Blender, database: Database, media: MediaStore
) -> None:
    """Check one uploaded version of a tenant's template and record ok or refused (with the reason).
    The step fails only when Blender could not reach a verdict; the version is then refused, saying so."""
    status, report, failed = check_upload(blender, database, media, context.partition_key, config.name, config.sha256)
    context.add_output_metadata({"status": status, "report": MetadataValue.json(report)})
    context.log.info(f"[{templates.CHECK_STEP}] {context.partition_key}: {config.name} {config.sha256[:12]} {status}")
    if failed:
        with classified(context, templates.CHECK_STEP):
            raise failed


@job(name=templates.CHECK_JOB, partitions_def=tenant_partitions, executor_def=in_process_executor)
def check_template_job():
    """Check an uploaded render template in Blender (scripts disabled) and record ok or refused."""
    template_check()
