"""Each external system behind one ConfigurableResource: the domain database, the media folders, Blender.

The definitions configure them from the environment (``EnvVar``); ``resources_from`` builds them
from the settings object for code that runs the definitions in-process (the demo, the CLI).
"""

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    Failure,
    MaterializeResult,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    open_pipes_session,
)
from sqlalchemy.orm import Session

from automat_pipeline.blender import blender_command, render_args, run_blender
from automat_pipeline.db.database import session
from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import OutputType


class Database(ConfigurableResource):
    """PostgreSQL holding tenants, products and product files (``AUTOMAT_DATABASE_URL``)."""

    url: str

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        s = session(self.url)
        try:
            with s.begin():
                yield s
        finally:
            s.close()


class MediaStore(ConfigurableResource):
    """Uploads (``AUTOMAT_UPLOADS_DIR``, read-only to the pipeline) and media (``AUTOMAT_MEDIA_DIR``)."""

    uploads_dir: str
    media_dir: str

    def inbox(self, tenant: str) -> Path:
        return Path(self.uploads_dir) / tenant

    def reports_dir(self, tenant: str) -> Path:
        """Catalogue import reports (.xlsx) for the tenant's operators to download."""
        return Path(self.media_dir) / tenant / "_catalog_reports"

    def templates_dir(self, tenant: str) -> Path:
        """The tenant's .blend template scenes, named by its output types."""
        return Path(self.media_dir) / tenant / "_templates"

    def product_dir(self, tenant: str, product: str) -> Path:
        path = Path(self.media_dir) / tenant / product
        path.mkdir(parents=True, exist_ok=True)
        return path


class Blender(ConfigurableResource):
    """``executable``: a Blender 5.0.1 binary, or the render environment's Python (bpy module)."""

    executable: str
    scripts_dir: str

    def render(
        self,
        context: AssetExecutionContext,
        glb: Path,
        output: Path,
        kind: OutputType,
        materials: Path | None = None,
        template: Path | None = None,
    ) -> MaterializeResult:
        """Render ``glb`` as output type ``kind``; log lines and progress reach the run log as it renders."""
        command = blender_command(
            self.executable, self.scripts_dir, render_args(glb, output, kind, materials, template)
        )
        with _pipes(context) as session:
            try:
                run_blender(
                    command,
                    env=session.get_bootstrap_env_vars(),
                    echo=True,
                    timeout=kind.timeout_seconds,
                    output=output,
                )
            except AutomatError as error:
                raise Failure(str(error), metadata={"error_class": error.error_class}) from error
        [result] = session.get_results()
        return result

    def render_batch(self, context: AssetExecutionContext, jobs: list[list[str]], timeout: float) -> list[dict]:
        """Render every job (``render_args``) in one warm Blender process; one result per job, in order,
        ``{"output", "error"}`` for a job that failed. Log lines and progress reach the run log."""
        with tempfile.TemporaryDirectory() as workdir:
            batch = Path(workdir) / "jobs.json"
            batch.write_text(json.dumps(jobs))
            command = blender_command(self.executable, self.scripts_dir, ["--batch", str(batch)])
            with _pipes(context) as session:
                try:
                    return run_blender(command, env=session.get_bootstrap_env_vars(), echo=True, timeout=timeout)
                except AutomatError as error:
                    raise Failure(str(error), metadata={"error_class": error.error_class}) from error


def _pipes(context: AssetExecutionContext):
    """A Dagster Pipes session whose messages (log lines, progress, metadata) travel by temp file."""
    return open_pipes_session(
        context=context, context_injector=PipesTempFileContextInjector(), message_reader=PipesTempFileMessageReader()
    )
