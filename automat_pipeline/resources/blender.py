"""Blender as a Dagster resource: a child process speaking Dagster Pipes."""

import json
import tempfile
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

from automat_pipeline.errors import InputError
from automat_pipeline.output_types import OutputType
from automat_pipeline.render import blender_command, render_args, run_blender


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
            except InputError as error:
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
                except InputError as error:
                    raise Failure(str(error), metadata={"error_class": error.error_class}) from error


def _pipes(context: AssetExecutionContext):
    """A Dagster Pipes session whose messages (log lines, progress, metadata) travel by temp file."""
    return open_pipes_session(
        context=context, context_injector=PipesTempFileContextInjector(), message_reader=PipesTempFileMessageReader()
    )
