"""Render templates, tenant self-service: upload, list, download, delete (``automat_pipeline.templates``).

The API has no Blender: it stores an upload and launches its check on a render host (job
``check_template``); the version stays ``checking`` until the check records ok or refused. While
Dagster does not answer, the check waits and the launch loop launches it later: the upload is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from automat_pipeline import templates
from automat_pipeline.api.deps import Caller, Tx, Who, caller_tenant, scoped_session, settings
from automat_pipeline.api.launcher import launch_checks
from automat_pipeline.api.receive import ReceivedFile, boundary, file_body, receive
from automat_pipeline.api.security import Permission
from automat_pipeline.db.models import RenderTemplate, Tenant, User
from automat_pipeline.errors import AutomatError
from automat_pipeline.settings import Settings

router = APIRouter(prefix="/templates", tags=["templates"])
# Checked only against the tenant's own: a name it has no template of is a 404, whatever it holds.
Name = Annotated[str, Path(max_length=200, description="The template's file name, e.g. studio.blend.")]


class TemplateOut(BaseModel):
    name: str = Field(description="The file name output types name it by (their template setting).")
    size_bytes: int = Field(description="Bytes uploaded.")
    sha256: str = Field(description="Content hash of this version.")
    status: Literal["checking", "ok", "refused"] = Field(
        description="checking: waiting for Blender's check on a render host; ok: the version renders use (one "
        "per name); refused: see error_class and reason (the version in use, if any, stays)."
    )
    error_class: str | None = Field(description="Why it was refused, as a class (holds_meshes, not_blend, ...).")
    reason: str | None = Field(description="Why it was refused.")
    warnings: list[str] = Field(description="What the check noticed without refusing it (scripts that never run).")
    report: dict = Field(
        description="What the check found: Blender it was saved with, scene, world, lights, cameras, meshes, "
        "render engine, scripts (none ever runs), files it refers to."
    )
    uploaded_by: str | None = Field(description="Who uploaded it (e-mail address); none for the command line.")
    uploaded_at: datetime = Field(description="When it was uploaded.")
    checked_at: datetime | None = Field(description="When the check ended.")
    used_by: list[str] = Field(description="The tenant's output types that name it.")
    run_id: str | None = Field(description="The check's Dagster run, once launched.")
    launch_error: str | None = Field(description="Why its check has not been launched yet (Dagster not answering).")


TEMPLATE_BODY = file_body(
    "The template (.blend): lights, world and render settings, no meshes; its file name is the template's name."
)


@router.post(
    "",
    status_code=202,
    openapi_extra=TEMPLATE_BODY,
    responses={
        200: {"model": TemplateOut, "description": "That content is the version in use already: nothing to check."},
        413: {"description": "Larger than the template limit (AUTOMAT_MAX_TEMPLATE_MB)."},
        415: {"description": "Not a .blend file."},
    },
)
async def upload_template(request: Request, response: Response, who: Who) -> TemplateOut:
    """Upload a template (tenant admins and above); its check runs in Blender on a render host, with the
    file's scripts disabled. A new version of a name is checked before it replaces the one in use,
    which serves until then. Poll GET /templates for the outcome.

    Streamed like POST /uploads: read only once the caller is known and allowed, refused (413) by
    its ``Content-Length`` or as soon as it passes the limit, with nothing left behind."""
    who.require(Permission.settings)
    config = settings(request)
    parts = boundary(request)
    tenant = await run_in_threadpool(caller_tenant, config.api_database_url, who)
    pending = templates.folder(config.media_dir, tenant.slug) / ".pending"
    pending.mkdir(parents=True, exist_ok=True)
    received = ReceivedFile(pending)
    try:
        await receive(request, received, parts)
        name = templates.check_name(received.given)
        try:
            templates.sniff(received.head, name)
        except AutomatError as error:
            raise HTTPException(415, error.reason) from error
        version_id, new = await run_in_threadpool(_accept, config, who, tenant, name, received)
    finally:
        received.discard()
    return await run_in_threadpool(_launched, request, who, tenant, version_id, new, response)


def _accept(config: Settings, who: Caller, tenant: Tenant, name: str, received: ReceivedFile) -> tuple[int, bool]:
    """Keep the upload (``templates.accept``); the version's id, and whether it needs a check."""
    stored = None
    try:
        with scoped_session(config.api_database_url, who.tenant()) as tx:
            sha256, staged = received.digest.hexdigest(), received.partial
            version, new = templates.accept(
                tx, tenant, name, sha256, received.size, staged, config.media_dir, who.user_id
            )
            stored = new and templates.pending_file(config.media_dir, tenant.slug, version.id)
        return version.id, new
    except Exception:
        if stored:  # moved into place, but the row was never committed
            stored.unlink(missing_ok=True)
        raise


def _launched(
    request: Request, who: Caller, tenant: Tenant, version_id: int, new: bool, response: Response
) -> TemplateOut:
    """The version as the upload's answer; its check launched first when it needs one."""
    with scoped_session(settings(request).api_database_url, who.tenant()) as tx:
        if new:
            launch_checks(tx, request.app.state.dagster, tenant)
        else:
            response.status_code = 200
        version = tx.get(RenderTemplate, version_id)
        return _out(tx, version, templates.used_by(tx, tenant.id))


@router.get("")
def list_templates(who: Who, tx: Tx) -> list[TemplateOut]:
    """Every template version of the tenant, by name (project managers and above): the one in use
    (ok), and a newer one being checked or refused."""
    who.require(Permission.trigger_renders)
    users = templates.used_by(tx, who.tenant())
    return [_out(tx, version, users) for version in templates.listing(tx, who.tenant())]


@router.get(
    "/{name}/file",
    response_class=FileResponse,
    responses={
        200: {"description": "The version in use.", "content": {"application/octet-stream": {}}},
        404: {"description": "No checked template of that name in your tenant."},
    },
)
def download_template(name: Name, request: Request, who: Who, tx: Tx):
    """The version of the template renders use (project managers and above)."""
    who.require(Permission.trigger_renders)
    templates.in_use(tx, who.tenant(), name)
    path = templates.folder(settings(request).media_dir, tx.get(Tenant, who.tenant()).slug) / name
    if not path.is_file():
        raise HTTPException(404, f"template {name!r} has no file")
    return FileResponse(path, media_type="application/octet-stream", filename=name)


@router.delete(
    "/{name}",
    status_code=204,
    responses={
        404: {"description": "No template of that name in your tenant."},
        409: {"description": "Output types name it; the answer names them."},
    },
)
def delete_template(name: Name, request: Request, who: Who) -> None:
    """Delete every version of a template and its files (tenant admins and above); refused while an
    output type names it."""
    who.require(Permission.settings)
    config = settings(request)
    with scoped_session(config.api_database_url, who.tenant()) as tx:
        tenant = tx.get(Tenant, who.tenant())
        if tenant is None:
            raise HTTPException(404, "no such tenant")
        files = templates.delete(tx, tenant, name, config.media_dir)
    for path in files:  # once the rows are gone for good
        path.unlink(missing_ok=True)


def _out(tx: Session, version: RenderTemplate, users: dict[str, list[str]]) -> TemplateOut:
    email = version.uploaded_by and tx.scalar(select(User.email).where(User.id == version.uploaded_by))
    return TemplateOut(
        name=version.name,
        size_bytes=version.size_bytes,
        sha256=version.sha256,
        status=version.status,
        error_class=version.error_class,
        reason=version.reason,
        warnings=(version.report or {}).get("warnings", []),
        report=version.report or {},
        uploaded_by=email or None,
        uploaded_at=version.uploaded_at,
        checked_at=version.checked_at,
        used_by=users.get(version.name, []) if version.status == "ok" else [],
        run_id=version.run_id,
        launch_error=version.launch_error,
    )
