"""Blender as a Dagster resource: a child process speaking Dagster Pipes."""

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
from automat_pipeline.render import blender_command, run_blender, thumbnail_args


class Blender(ConfigurableResource):
    """``executable``: a Blender 5.0.1 binary, or the render environment's Python (bpy module)."""

    executable: str
    scripts_dir: str
    thumbnail_size: int = 256
    thumbnail_engine: str = "cycles"
    thumbnail_samples: int = 16
    thumbnail_timeout_seconds: float = 300

    def render_thumbnail(self, context: AssetExecutionContext, glb: Path, output: Path) -> MaterializeResult:
        """Render ``glb`` to ``output``; Blender's log lines reach the run log as it renders."""
        args = thumbnail_args(glb, output, self.thumbnail_size, self.thumbnail_engine, self.thumbnail_samples)
        command = blender_command(self.executable, self.scripts_dir, "render_thumbnail.py", args)
        with open_pipes_session(
            context=context,
            context_injector=PipesTempFileContextInjector(),
            message_reader=PipesTempFileMessageReader(),
        ) as session:
            try:
                run_blender(command, env=session.get_bootstrap_env_vars(), echo=True,
                            timeout=self.thumbnail_timeout_seconds, output=output)
            except InputError as error:
                raise Failure(str(error), metadata={"error_class": error.error_class}) from error
        [result] = session.get_results()
        return result
