"""Render templates: a tenant's .blend scenes (lights, world, render settings) that output types name.

An upload (API or CLI) is stored as ``<media>/<tenant>/_templates/.pending/<id>.blend`` with a
``render_templates`` row in status ``checking``; the ``check_template`` job opens it in Blender on a
render host with scripts disabled (``blender/check_template.py``) and records the outcome here:
``refused`` with the class and reason, or ``ok``, and the file moves to
``<media>/<tenant>/_templates/<name>``, the file renders open. A newer upload of a name is checked
before it replaces the version in use, which serves until then. Nothing in a template ever runs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from automat_pipeline.db.models import RenderTemplate, Tenant, TenantOutputType
from automat_pipeline.errors import AutomatError, Conflict, NotFound
from automat_pipeline.keys import check_key_part, path_under
from automat_pipeline.output_types import TEMPLATE_NAME

CHECK_JOB = "check_template"  # the Dagster job, partitioned by tenant
CHECK_STEP = "template_check"  # its one step, a Blender step (tags.RENDER_STEPS)
CHECK_SECONDS = 120  # a file Blender cannot open in this time is refused
# A .blend starts with BLENDER, or is one compressed with zstd (Blender's default since 3.0) or gzip.
MAGIC = (b"BLENDER", b"\x28\xb5\x2f\xfd", b"\x1f\x8b")


def folder(media_dir: Path | str, tenant: str) -> Path:
    """The tenant's templates, each under its name, checked."""
    return path_under(media_dir, check_key_part("tenant", tenant), "_templates")


def pending_file(media_dir: Path | str, tenant: str, template_id: int) -> Path:
    """Where an upload waits for its check (a name of its own: uploads of one name never meet)."""
    return folder(media_dir, tenant) / ".pending" / f"{template_id}.blend"


def check_name(name: str) -> str:
    """``name``, if output types can name it (``OutputType.template``'s pattern)."""
    if not re.fullmatch(TEMPLATE_NAME, name or ""):
        raise AutomatError(
            "invalid_template_name",
            f"template name {name!r} must be 1-121 characters of A-Z a-z 0-9 . _ - starting with a letter "
            "or digit, ending in .blend",
        )
    return name


def sniff(head: bytes, name: str) -> None:
    """A .blend by its first bytes (``BLENDER``, or zstd or gzip around one); Blender's check decides the rest."""
    if not head.startswith(MAGIC):
        raise AutomatError("not_blend", f"{name} is not a .blend file (it starts with neither BLENDER nor zstd/gzip)")


def accept(
    tx: Session,
    tenant: Tenant,
    name: str,
    sha256: str,
    size: int,
    staged: Path,
    media_dir: Path | str,
    uploaded_by: int | None = None,
) -> tuple[RenderTemplate, bool]:
    """Keep an upload (the file at ``staged``) for its check; ``(row, whether a check is needed)``.

    The same content as the version in use changes nothing; any earlier version still checking or
    refused is superseded by this one (a check in flight then finds its row gone)."""
    rows = _versions(tx, tenant.id, name)
    same = next((r for r in rows if r.sha256 == sha256 and r.status == "ok"), None)
    if same:
        staged.unlink(missing_ok=True)
        return same, False
    for row in rows:
        if row.status != "ok":
            pending_file(media_dir, tenant.slug, row.id).unlink(missing_ok=True)
            tx.delete(row)
    tx.flush()
    row = RenderTemplate(tenant_id=tenant.id, name=name, sha256=sha256, size_bytes=size, uploaded_by=uploaded_by)
    tx.add(row)
    tx.flush()
    target = pending_file(media_dir, tenant.slug, row.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.replace(target)
    return row, True


def waiting(tx: Session, tenant_id: int, name: str, sha256: str) -> RenderTemplate | None:
    """The version a check is for, while it waits for one (None: superseded or deleted meanwhile)."""
    return tx.scalar(
        select(RenderTemplate).where(
            RenderTemplate.tenant_id == tenant_id,
            RenderTemplate.name == name,
            RenderTemplate.sha256 == sha256,
            RenderTemplate.status == "checking",
        )
    )


def record(
    tx: Session, tenant: Tenant, name: str, sha256: str, media_dir: Path | str, report: dict
) -> RenderTemplate | None:
    """Keep a check's outcome (``report``: blender/check_template.py's, or ``{"problems": [[class,
    reason]]}`` when the check could not run). Refused: the upload is removed, the version in use
    stays. Ok: it becomes the version in use, unless a newer upload already did; older versions go.
    The row, or None when nothing waited for this outcome."""
    rows = _versions(tx, tenant.id, name)
    row = next((r for r in rows if r.sha256 == sha256 and r.status == "checking"), None)
    if row is None:
        return None
    staged = pending_file(media_dir, tenant.slug, row.id)
    row.report, row.checked_at = report, datetime.now(UTC)
    problems = report.get("problems") or []
    if problems:
        row.status, row.error_class = "refused", problems[0][0]
        row.reason = "; ".join(reason for _, reason in problems)
        staged.unlink(missing_ok=True)
        return row
    if any(r.status == "ok" and r.id > row.id for r in rows):  # a newer upload passed first
        staged.unlink(missing_ok=True)
        tx.delete(row)
        return None
    staged.replace(folder(media_dir, tenant.slug) / name)  # renders starting from now open this one
    row.status = "ok"
    for older in (r for r in rows if r.id < row.id):
        pending_file(media_dir, tenant.slug, older.id).unlink(missing_ok=True)
        tx.delete(older)
    return row


def listing(tx: Session, tenant_id: int) -> list[RenderTemplate]:
    """Every version the tenant has: by name, oldest first (the one in use, then a newer one checking)."""
    return list(
        tx.scalars(
            select(RenderTemplate)
            .where(RenderTemplate.tenant_id == tenant_id)
            .order_by(RenderTemplate.name, RenderTemplate.id)
        )
    )


def in_use(tx: Session, tenant_id: int, name: str) -> RenderTemplate:
    """The checked version of ``name``, which renders open; NotFound if there is none."""
    found = tx.scalar(
        select(RenderTemplate).where(
            RenderTemplate.tenant_id == tenant_id, RenderTemplate.name == name, RenderTemplate.status == "ok"
        )
    )
    if found is None:
        raise NotFound(f"no checked template {name!r}")
    return found


def used_by(tx: Session, tenant_id: int) -> dict[str, list[str]]:
    """Template name → the tenant's output types that name it."""
    named = TenantOutputType.settings["template"].as_string()
    users: dict[str, list[str]] = {}
    for output_type, template in tx.execute(
        select(TenantOutputType.name, named)
        .where(TenantOutputType.tenant_id == tenant_id, named.is_not(None))
        .order_by(TenantOutputType.name)
    ):
        users.setdefault(template, []).append(output_type)
    return users


def require_usable(tx: Session, tenant_id: int, name: str) -> None:
    """An output type may name ``name`` only once it is checked: AutomatError (422) otherwise. The
    version is share-locked, so a concurrent delete waits for this transaction and then sees its user."""
    versions = _versions(tx, tenant_id, name, share=True)
    if any(r.status == "ok" for r in versions):
        return
    if not versions:
        why = "this tenant has no such template: upload it (POST /templates, automat template upload)"
    elif versions[-1].status == "checking":
        why = "it is still being checked: try again once GET /templates says ok"
    else:
        why = f"it was refused ({versions[-1].error_class}: {versions[-1].reason})"
    raise AutomatError("unknown_template", f"template {name!r} cannot be used: {why}")


def delete(tx: Session, tenant: Tenant, name: str, media_dir: Path | str) -> list[Path]:
    """Remove every version of ``name``; the files to remove once that is committed. Conflict (409)
    while an output type names it."""
    rows = _versions(tx, tenant.id, name)
    if not rows:
        raise NotFound(f"no template {name!r}")
    users = used_by(tx, tenant.id).get(name)
    if users:
        raise Conflict(
            f"template {name!r} is used by output type{'s' if len(users) > 1 else ''} {', '.join(users)}: "
            "change or delete them first"
        )
    for row in rows:
        tx.delete(row)
    return [folder(media_dir, tenant.slug) / name, *(pending_file(media_dir, tenant.slug, r.id) for r in rows)]


def _versions(tx: Session, tenant_id: int, name: str, share: bool = False) -> list[RenderTemplate]:
    """The versions of ``name``, oldest first, locked against concurrent uploads, checks and deletes
    (share: against deletes and outcomes only)."""
    return list(
        tx.scalars(
            select(RenderTemplate)
            .where(RenderTemplate.tenant_id == tenant_id, RenderTemplate.name == name)
            .order_by(RenderTemplate.id)
            .with_for_update(read=share)
        )
    )
