"""Blender as a Dagster resource: a child process speaking Dagster Pipes."""

from pathlib import Path

from dagster import AssetExecutionContext, ConfigurableResource, MaterializeResult, PipesSubprocessClient

from automat_pipeline.render import blender_command, thumbnail_args


class Blender(ConfigurableResource):
    """``executable``: a Blender 5.0.1 binary, or the render environment's Python (bpy module)."""

    executable: str
    scripts_dir: str
    thumbnail_size: int = 256
    thumbnail_engine: str = "cycles"
    thumbnail_samples: int = 16

    def render_thumbnail(self, context: AssetExecutionContext, glb: Path, output: Path) -> MaterializeResult:
        """Render ``glb`` to ``output``; Blender's log lines stream into the run log as it goes."""
        args = thumbnail_args(glb, output, self.thumbnail_size, self.thumbnail_engine, self.thumbnail_samples)
        command = blender_command(self.executable, self.scripts_dir, "render_thumbnail.py", args)
        return PipesSubprocessClient().run(context=context, command=command).get_materialize_result()
