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
from automat_pipeline.render import blender_command, render_args, run_blender


class Blender(ConfigurableResource):
    """``executable``: a Blender 5.0.1 binary, or the render environment's Python (bpy module)."""

    executable: str
    scripts_dir: str
    thumbnail_size: int = 256
    thumbnail_engine: str = "cycles"
    thumbnail_samples: int = 16
    thumbnail_timeout_seconds: float = 300
    turntable_size: int = 512
    turntable_frames: int = 36
    turntable_samples: int = 16
    turntable_timeout_seconds: float = 3600

    def render_thumbnail(self, context: AssetExecutionContext, glb: Path, output: Path) -> MaterializeResult:
        args = render_args(glb, output, self.thumbnail_size, self.thumbnail_engine, self.thumbnail_samples)
        return self._render(context, args, self.thumbnail_timeout_seconds, output)

    def render_turntable(self, context: AssetExecutionContext, glb: Path, output: Path) -> MaterializeResult:
        args = render_args(glb, output, self.turntable_size, "cycles", self.turntable_samples, self.turntable_frames)
        return self._render(context, args, self.turntable_timeout_seconds, output)

    def _render(self, context: AssetExecutionContext, args: list[str], timeout: float, output: Path):
        """One Blender process; its log lines and progress reach the run log as it renders."""
        command = blender_command(self.executable, self.scripts_dir, args)
        with open_pipes_session(
            context=context,
            context_injector=PipesTempFileContextInjector(),
            message_reader=PipesTempFileMessageReader(),
        ) as session:
            try:
                run_blender(command, env=session.get_bootstrap_env_vars(), echo=True, timeout=timeout, output=output)
            except InputError as error:
                raise Failure(str(error), metadata={"error_class": error.error_class}) from error
        [result] = session.get_results()
        return result
