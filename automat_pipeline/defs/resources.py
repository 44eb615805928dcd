"""Each external system behind one ConfigurableResource: the domain database, the media folders, Blender.

The definitions configure them from the environment (``EnvVar``); ``resources_from`` builds them
from the settings object for code that runs the definitions in-process (the demo, the CLI).
"""

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    open_pipes_session,
)
from sqlalchemy.orm import Session

from automat_pipeline import templates
from automat_pipeline.blender import CHECK_SCRIPT, blender_command, render_args, run_blender
from automat_pipeline.db.database import database_away, scope, session
from automat_pipeline.keys import check_key_part, path_under
from automat_pipeline.output_types import OutputType
from automat_pipeline.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Database(ConfigurableResource):
    """PostgreSQL holding tenants, products and product files (``AUTOMAT_DATABASE_URL``)."""

    url: str

    @contextmanager
    def session(self, tenant: str | None = None, owner: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises. It runs as the
        pipeline's role under row-level security (migrations 0020, 0022) and sees ``tenant``'s rows only
        (a slug): every step that works for one tenant's partition opens its sessions so. Without a
        tenant it sees no tenant's rows until ``as_tenant`` names one: a sensor working tenant by
        tenant, which learns which tenants have work through the security-definer functions granted to
        the role. ``owner``: as the tables' owner, whom no policy binds, for what must read every
        tenant's users and notifications (``notify.digests``) or administer (the demo's tenant)."""
        s = session(self.url)
        try:
            with s.begin():
                if not owner:
                    scope(s, tenant)
                yield s
        finally:
            s.close()

    def retrying(self, work: Callable[[Session], T], tenant: str | None = None, patience: float = 600) -> T:
        """``work`` in one transaction (``session(tenant)``); if the database goes away meanwhile (a
        restart, a failover), that transaction is rolled back and ``work`` runs again in a new one once the database
        answers, for up to ``patience`` seconds. Nothing is written to Dagster's storage (the same
        server, perhaps) while it waits: the wait is on the run's stderr only."""
        deadline, pause = time.monotonic() + patience, 1.0
        while True:
            try:
                with self.session(tenant) as s:
                    return work(s)
            except Exception as error:
                if not database_away(error) or time.monotonic() + pause > deadline:
                    raise
                log.warning("the database went away (%s); trying again in %g s", str(error).splitlines()[0], pause)
                time.sleep(pause)
                pause = min(pause * 2, 15.0)


class MediaStore(ConfigurableResource):
    """Uploads (``AUTOMAT_UPLOADS_DIR``, read-only to the pipeline) and media (``AUTOMAT_MEDIA_DIR``)."""

    uploads_dir: str
    media_dir: str

    def inbox(self, tenant: str) -> Path:
        return path_under(self.uploads_dir, check_key_part("tenant", tenant))

    def reports_dir(self, tenant: str) -> Path:
        """Catalogue import reports (.xlsx) for the tenant's operators to download."""
        return path_under(self.media_dir, check_key_part("tenant", tenant), "_catalog_reports")

    def templates_dir(self, tenant: str) -> Path:
        """The tenant's checked .blend template scenes, named by its output types (``templates.folder``)."""
        return templates.folder(self.media_dir, tenant)

    def product_dir(self, tenant: str, product: str) -> Path:
        path = path_under(self.media_dir, check_key_part("tenant", tenant), check_key_part("product", product))
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def writing(self, run_id: str, *outputs: Path) -> Iterator[list[Path]]:
        """Where the run writes ``outputs`` until they are whole: ``<tenant>/.partial/<run id>/…`` on
        the same volume, each moved into place when the block ends; if it raises, their folders go
        with whatever else the writer left there (OpenCascade's ``*.bin.tmp``). A reader never meets
        half a file; what a worker that died left is its run's folder (``discard_partials``)."""
        media = Path(self.media_dir).resolve()
        partials = []
        for output in outputs:
            tenant, *rest = Path(output).resolve().relative_to(media).parts
            partials.append(media / tenant / PARTIAL / run_id / Path(*rest))
            _make_folder(partials[-1].parent)
        try:
            yield partials
        except BaseException:
            for partial in partials:
                shutil.rmtree(partial.parent, ignore_errors=True)
            raise
        finally:
            for partial, output in zip(partials, outputs, strict=True):
                if partial.exists():
                    partial.replace(output)
                _tidy(partial.parent)

    def discard_partials(self, run_id: str) -> list[Path]:
        """Remove what the run left half-written (its worker died mid-write); the files removed."""
        removed = []
        for folder in Path(self.media_dir).glob(f"*/{PARTIAL}/{run_id}"):
            removed += [p for p in folder.rglob("*") if p.is_file()]
            shutil.rmtree(folder, ignore_errors=True)
        return removed


PARTIAL = ".partial"  # no tenant or product key starts with a dot


def _make_folder(folder: Path) -> None:
    """``folder`` and its parents. A writer of the same run finishing in another thread (a batch's
    conversions run at once) may ``_tidy`` away the run's folder between two of mkdir's steps:
    then the folders are made again."""
    for _ in range(10):
        try:
            return folder.mkdir(parents=True, exist_ok=True)
        except (FileNotFoundError, FileExistsError):  # a parent gone; or made, then gone, at once
            continue
    folder.mkdir(parents=True, exist_ok=True)


def _tidy(folder: Path) -> None:
    """Remove ``folder`` and its parents up to the ``.partial`` folder while they are empty."""
    while folder.name != PARTIAL and folder.parent != folder:
        try:
            folder.rmdir()
        except FileNotFoundError:  # removed with what a failed writer left
            pass
        except OSError:  # not empty: another output of the run, or of another run
            return
        folder = folder.parent


class Blender(ConfigurableResource):
    """``executable``: a Blender 5.0.1 binary, or the render environment's Python (bpy module).

    Failures are ``AutomatError``s (``timeout``, ``render_failed``, ``missing_blender``): the step
    that asked records them and fails through ``defs.failures``.
    """

    executable: str
    scripts_dir: str

    def render(
        self,
        context: AssetExecutionContext,
        glb: Path,
        output: Path,
        output_type: OutputType,
        materials: Path | None = None,
        template: Path | None = None,
        label: str | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict:
        """Render ``glb`` as ``output_type``; log lines and progress reach the run log as it renders.
        Returns what Blender reported (engine, device, seconds, bytes, materials)."""
        args = render_args(glb, output, output_type, materials, template, label)
        with _pipes(context) as session:
            run_blender(
                blender_command(self.executable, self.scripts_dir, args),
                env=session.get_bootstrap_env_vars(),
                echo=True,
                timeout=output_type.timeout_seconds,
                output=output,
                on_progress=on_progress,
            )
        [result] = session.get_results()
        return {key: value.value for key, value in (result.metadata or {}).items()}

    def render_batch(self, context: AssetExecutionContext, jobs: list[list[str]], timeout: float) -> list[dict]:
        """Render every job (``render_args``) in one warm Blender process; one result per job, in order,
        ``{"output", "error"}`` for a job that failed. Log lines and progress reach the run log."""
        with tempfile.TemporaryDirectory() as workdir:
            batch = Path(workdir) / "jobs.json"
            batch.write_text(json.dumps(jobs))
            command = blender_command(self.executable, self.scripts_dir, ["--batch", str(batch)])
            with _pipes(context) as session:
                return run_blender(command, env=session.get_bootstrap_env_vars(), echo=True, timeout=timeout)

    def check_template(self, path: Path, name: str | None = None) -> dict:
        """What ``blender/check_template.py`` finds in template ``name`` (default: the file's name) at
        ``path``, opened with scripts disabled. AutomatError when Blender cannot start or does not
        finish, with its last words."""
        args = [str(path), name or path.name]
        command = blender_command(self.executable, self.scripts_dir, args, script=CHECK_SCRIPT)
        [report] = run_blender(command, timeout=templates.CHECK_SECONDS)
        return report


def _pipes(context: AssetExecutionContext):
    """A Dagster Pipes session whose messages (log lines, progress, metadata) travel by temp file."""
    return open_pipes_session(
        context=context, context_injector=PipesTempFileContextInjector(), message_reader=PipesTempFileMessageReader()
    )


def resources_from(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources the definitions bind, built from ``settings``: for code that uses them outside a
    run (the CLI, the demo's sensor ticks, tests)."""
    return {
        "database": Database(url=settings.database_url),
        "media": MediaStore(uploads_dir=str(settings.uploads_dir), media_dir=str(settings.media_dir)),
        "blender": Blender(executable=settings.blender, scripts_dir=str(settings.blender_scripts)),
    }
