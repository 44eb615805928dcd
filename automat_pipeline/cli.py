"""``automat``: the command line operators and scripts rely on.

Contract for every command that reads a file: on bad input, exit 2 with one line
``error: <class>: <reason>`` on stderr and never a traceback; with ``--json``, stdout holds exactly
one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from automat_pipeline.errors import AutomatError


def cad_convert(args: argparse.Namespace) -> dict:
    from automat_pipeline.cad import convert_isolated
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver

    started = time.perf_counter()
    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES) if args.production else None
    from automat_pipeline.redirect import redirected

    with redirected(2, 1):  # OpenCascade prints to fd 1, which carries the JSON
        result = convert_isolated(
            Path(args.step),
            Path(args.output),
            resolver=resolver,
            production_path=args.production and Path(args.production),
            timeout_seconds=args.timeout,
            memory_mb=args.memory_mb,
        )
    return {"glb": str(args.output), **result.as_dict(), "total_seconds": round(time.perf_counter() - started, 3)}


def render(args: argparse.Namespace) -> dict:
    from automat_pipeline.blender import blender_command, render_args, run_blender
    from automat_pipeline.embedded import load_settings

    glb, output = Path(args.glb), Path(args.output)
    if not glb.is_file() or glb.stat().st_size == 0:
        raise AutomatError("missing_file" if not glb.exists() else "empty_file", f"{glb} is missing or empty")
    if glb.read_bytes()[:4] != b"glTF":
        raise AutomatError("not_glb", f"{glb.name} is not a binary glTF (.glb) file")
    settings = load_settings()
    with tempfile.TemporaryDirectory() as workdir:
        output_type, library, template = _render_setup(args, Path(workdir))
        command = blender_command(
            settings.blender, settings.blender_scripts, render_args(glb, output, output_type, library, template)
        )
        [result] = run_blender(command, timeout=output_type.timeout_seconds, output=output)
        return result


def _render_setup(args: argparse.Namespace, workdir: Path):
    """The output type, library file and template of a CLI render.

    ``render still`` takes a named output type (the tenant's, or a shipped one); thumbnails and
    turntables take their settings from flags. With ``--tenant``, Blender gets the tenant's material
    library and templates; without, the GLB's own materials and the studio scene.
    """
    from automat_pipeline import materials, output_types

    if args.kind != "still":
        output_type = output_types.parse(
            args.kind,
            dict(
                kind=args.kind,
                resolution=args.size,
                engine=args.engine,
                samples=args.samples,
                camera=args.camera,
                frames=getattr(args, "frames", 36),
                timeout_seconds=args.timeout,
                transparent=args.kind != "turntable",
                ground_shadow=args.ground_shadow,
                cycles_device=args.device,
            ),
        )
    if not args.tenant:
        if args.kind == "still":
            output_type = _named_output_type([t for t in output_types.DEFAULTS if t.kind == "still"], args.output_type)
        if output_type.template:
            raise AutomatError("missing_template", f"output type {output_type.name!r} names a template: give --tenant")
        return output_type, None, None
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.embedded import prepare
    from automat_pipeline.tenant_settings import TenantSettings

    settings = prepare().settings
    with session(settings.database_url) as s:
        tenant = repository.tenant(s, args.tenant, create=False)
        if tenant is None:
            raise AutomatError("unknown_tenant", f"tenant {args.tenant!r} does not exist (automat tenant create)")
        if args.kind == "still":
            output_type = _named_output_type(repository.tenant_output_types(s, tenant, "still"), args.output_type)
        elif output_type.cycles_device is None:
            output_type = output_type.model_copy(
                update={"cycles_device": TenantSettings.of(tenant.settings).cycles_device}
            )
        library = workdir / "materials.json"
        library.write_text(
            json.dumps(
                materials.for_blender(repository.material_library(s, tenant), repository.fallback_material(tenant))
            )
        )
    template = None
    if output_type.template:
        template = resources_from(settings)["media"].templates_dir(args.tenant) / output_type.template
        if not template.is_file():
            raise AutomatError(
                "missing_template", f"output type {output_type.name!r} names {template}, which does not exist"
            )
    return output_type, library, template


def _named_output_type(known: list, name: str):
    found = {t.name: t for t in known}
    if name not in found:
        raise AutomatError("unknown_output_type", f"no still output type {name!r}; known: {', '.join(sorted(found))}")
    return found[name]


def render_host_warm(args: argparse.Namespace) -> dict:
    """The warm-up; with ``--every``, again every so many seconds until stopped (the render host
    service: its status stays current without renders)."""
    from automat_pipeline import render_host
    from automat_pipeline.embedded import load_settings

    settings, status = load_settings(), args.status_file and Path(args.status_file)
    report = render_host.warm(settings, args.timeout, status)
    while args.every:
        print(summary(args.name, report), flush=True)
        time.sleep(args.every)
        try:
            report = render_host.warm(settings, args.timeout, status)
        except AutomatError as error:  # a failed probe is reported, and the next one comes
            print(f"error: {error.error_class}: {error.reason}", file=sys.stderr, flush=True)
    return report


def catalog_check(args: argparse.Namespace) -> dict:
    from automat_pipeline.catalog import read_catalog

    check = read_catalog(Path(args.xlsx))
    return {
        "tables": [
            {"sheet": t.sheet, "header_row": t.header_row, "columns": t.columns, "rows": len(t.rows)}
            for t in check.tables
        ],
        "accepted": [asdict(r) for r in check.accepted],
        "rejected": [asdict(r) for r in check.rejected],
    }


def catalog_import(args: argparse.Namespace) -> dict:
    from dagster import DagsterInstance

    from automat_pipeline.catalog_import import attach_report, import_workbook
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import CatalogImport
    from automat_pipeline.defs.partitions import register_products
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.embedded import prepare
    from automat_pipeline.notify import audit

    path = Path(args.xlsx)
    if not path.is_file():
        raise AutomatError("missing_file", f"{path} does not exist")
    settings = prepare().settings
    media = resources_from(settings)["media"]
    with session(settings.database_url) as s, s.begin():
        tenant = repository.tenant(s, args.tenant, create=False)
        if tenant is None:
            raise AutomatError("unknown_tenant", f"tenant {args.tenant!r} does not exist (automat tenant create)")
        result = import_workbook(s, tenant, path, "cli")
        audit.cli(s, "catalog import", f"catalog_import:{result.import_id}", tenant.id, file=path.name, **result.counts)
    if result.error:
        raise result.error
    with session(settings.database_url) as s, s.begin(), DagsterInstance.get() as instance:
        register_products(instance, s, repository.tenant(s, args.tenant, create=False))
        report = attach_report(s, s.get(CatalogImport, result.import_id), path, media.reports_dir(args.tenant))
    return {
        "import_id": result.import_id,
        "counts": result.counts,
        "report": str(report),
        "rejected": [asdict(r) for r in result.rejected],
        "seconds": result.seconds,
    }


def tenant_create(args: argparse.Namespace) -> dict:
    from dagster import DagsterInstance

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.defs.partitions import tenant_partitions
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.embedded import prepare
    from automat_pipeline.keys import check_key_part
    from automat_pipeline.notify import audit

    slug = check_key_part("tenant", args.name)
    settings = prepare().settings
    with session(settings.database_url) as s, s.begin():
        tenant = repository.tenant(s, slug)
        audit.cli(s, "tenant create", f"tenant:{tenant.id}", None, slug=slug)
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(tenant_partitions.name, [slug])
    inbox = resources_from(settings)["media"].inbox(slug)
    inbox.mkdir(parents=True, exist_ok=True)
    return {"tenant": tenant.slug, "id": tenant.id, "inbox": str(inbox)}


def user_create(args: argparse.Namespace) -> dict:
    from sqlalchemy import select

    from automat_pipeline.api.security import Role, new_user, normalize_email
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import User
    from automat_pipeline.embedded import prepare
    from automat_pipeline.notify import audit

    password = os.environ.get("AUTOMAT_USER_PASSWORD") or sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        raise AutomatError("weak_password", "the password (stdin or AUTOMAT_USER_PASSWORD) needs 12 characters or more")
    if (args.role == Role.global_admin.value) != (args.tenant is None):
        raise AutomatError("invalid_user", "a global_admin has no --tenant; every other role needs one")
    settings = prepare().settings
    with session(settings.database_url) as s, s.begin():
        tenant = args.tenant and repository.tenant(s, args.tenant, create=False)
        if args.tenant and tenant is None:
            raise AutomatError("unknown_tenant", f"tenant {args.tenant!r} does not exist (automat tenant create)")
        if s.scalar(select(User.id).where(User.email_normalized == normalize_email(args.email))):
            raise AutomatError("email_taken", f"{args.email} already has a user")
        user = new_user(args.email, password, Role(args.role), tenant.id if tenant else None)
        s.add(user)
        s.flush()
        audit.cli(s, "user create", f"user:{user.id}", user.tenant_id, email=user.email, role=user.role)
        return {"user": user.id, "email": user.email, "role": user.role, "tenant": args.tenant}


def user_list(args: argparse.Namespace) -> dict:
    from sqlalchemy import select

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import User
    from automat_pipeline.embedded import prepare

    with session(prepare().settings.database_url) as s, s.begin():
        query = select(User).order_by(User.id)
        if args.tenant:
            tenant = repository.tenant(s, args.tenant, create=False)
            if tenant is None:
                raise AutomatError("unknown_tenant", f"tenant {args.tenant!r} does not exist")
            query = query.where(User.tenant_id == tenant.id)
        return {"users": [_user_out(s, user) for user in s.scalars(query)]}


def user_change(args: argparse.Namespace) -> dict:
    """``user activate|deactivate|role``: effective at once, as over the API (``accounts.change_user``)."""
    from automat_pipeline.api.accounts import change_user
    from automat_pipeline.api.security import Role
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    role = Role(args.role) if args.command == "role" else None
    with session(prepare().settings.database_url) as s, s.begin():
        user = _user(s, args.email)
        if role is not None and user.role == Role.global_admin:  # --role offers tenant roles only
            raise AutomatError("invalid_user", "a global admin has no tenant; every other role has one")
        change_user(s, user, role, {"activate": True, "deactivate": False}.get(args.command))
        return _user_out(s, user)


def user_reset_password(args: argparse.Namespace) -> dict:
    from automat_pipeline.api.accounts import issue_reset
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    with session(prepare().settings.database_url) as s, s.begin():
        user = _user(s, args.email)
        token, expires = issue_reset(s, user)
        return {"user": user.id, "email": user.email, "reset_token": token, "expires_at": expires.isoformat()}


def _user(s, email: str):
    from sqlalchemy import select

    from automat_pipeline.api.security import normalize_email
    from automat_pipeline.db.models import User

    user = s.scalar(select(User).where(User.email_normalized == normalize_email(email)))
    if user is None:
        raise AutomatError("unknown_user", f"no user {email}")
    return user


def _user_out(s, user) -> dict:
    from automat_pipeline.db.models import Tenant

    tenant = user.tenant_id and s.get(Tenant, user.tenant_id).slug
    return {"user": user.id, "email": user.email, "role": user.role, "tenant": tenant, "active": user.active}


def tenant_list(args: argparse.Namespace) -> dict:
    from sqlalchemy import select

    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import Tenant
    from automat_pipeline.embedded import prepare

    with session(prepare().settings.database_url) as s:
        tenants = s.scalars(select(Tenant).order_by(Tenant.id))
        return {"tenants": [{"id": t.id, "tenant": t.slug, "name": t.name, "active": t.active} for t in tenants]}


def tenant_change(args: argparse.Namespace) -> dict:
    """``tenant activate|deactivate``: as over the API (``accounts.change_tenant``)."""
    from automat_pipeline.api.accounts import change_tenant
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    with session(prepare().settings.database_url) as s, s.begin():
        tenant = repository.known_tenant(s, args.name)
        changed = change_tenant(s, tenant.id, None, args.command == "activate")
        return {"id": changed.id, "tenant": changed.slug, "name": changed.name, "active": changed.active}


@contextlib.contextmanager
def _tenant_session(args: argparse.Namespace):
    """``with _tenant_session(args) as (session, tenant):`` one transaction on ``--tenant``."""
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    with session(prepare().settings.database_url) as s, s.begin():
        yield s, repository.known_tenant(s, args.tenant)


def _changed(args: argparse.Namespace, changes: list[dict]) -> dict:
    """What a library change changes, as the API answers it."""
    return {"tenant": args.tenant, "products": len(changes), "product_ids": [c["product_id"] for c in changes]}


def _invalid(error_class: str, error) -> AutomatError:
    return AutomatError(error_class, "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors()))


def material_list(args: argparse.Namespace) -> dict:
    from automat_pipeline.db import repository

    with _tenant_session(args) as (s, tenant):
        own, library = repository.own_materials(s, tenant), repository.material_library(s, tenant)
    return {"tenant": args.tenant, "materials": {n: asdict(m) | {"own": n in own} for n, m in library.items()}}


def material_set(args: argparse.Namespace) -> dict:
    from pydantic import ValidationError

    from automat_pipeline.db import repository
    from automat_pipeline.materials import MaterialIn

    try:
        material = MaterialIn(
            name=args.material_name,
            base_color=args.color,
            metallic=args.metallic,
            roughness=args.roughness,
            description=args.description,
        ).as_material()
    except ValidationError as error:
        raise _invalid("invalid_material", error) from error
    with _tenant_session(args) as (s, tenant):
        return _changed(args, repository.put_material(s, tenant, material))


def material_delete(args: argparse.Namespace) -> dict:
    from automat_pipeline.db import repository

    with _tenant_session(args) as (s, tenant):
        return _changed(args, repository.remove_material(s, tenant, args.material_name))


def alias_list(args: argparse.Namespace) -> dict:
    from automat_pipeline.db import repository

    with _tenant_session(args) as (s, tenant):
        aliases = repository.tenant_aliases(s, tenant.id)
    return {"tenant": args.tenant, "aliases": [{"pattern": p, "material": m} for p, m in aliases]}


def alias_set(args: argparse.Namespace) -> dict:
    from pydantic import ValidationError

    from automat_pipeline.db import repository
    from automat_pipeline.materials import AliasIn

    try:
        aliases = [AliasIn(pattern=p, material=m) for p, _, m in (a.rpartition("=") for a in args.aliases)]
    except ValidationError as error:
        raise _invalid("invalid_aliases", error) from error
    with _tenant_session(args) as (s, tenant):
        return _changed(args, repository.put_aliases(s, tenant, aliases))


def template_upload(args: argparse.Namespace) -> dict:
    """Store a template for the tenant and check it here, in Blender with its scripts disabled (the
    check_template job's own step); a refused one exits 2 with the reason, the version in use stays."""
    import secrets
    import shutil

    from automat_pipeline import templates
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.defs.templates.check import check_upload
    from automat_pipeline.inbox import sha256

    path = Path(args.file)
    if not path.is_file():
        raise AutomatError("missing_file", f"{path} does not exist")
    name = templates.check_name(args.template or path.name)
    with path.open("rb") as f:
        templates.sniff(f.read(64), name)
    settings, session, tenant = _prepared_tenant(args.tenant)
    staged = templates.folder(settings.media_dir, tenant.slug) / ".pending" / f".{name}.{secrets.token_hex(8)}.part"
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(path, staged)
        digest, size = sha256(staged), staged.stat().st_size
        with session(settings.database_url) as s, s.begin():
            version, new = templates.accept(s, tenant, name, digest, size, staged, settings.media_dir)
    finally:
        staged.unlink(missing_ok=True)
    status, report = version.status, version.report
    if new:
        resources = resources_from(settings)
        status, report, _ = check_upload(
            resources["blender"], resources["database"], resources["media"], tenant.slug, name, digest
        )
    if status == "refused":
        [error_class, reason], *more = report["problems"]
        raise AutomatError(error_class, "; ".join([reason, *(r for _, r in more)]))
    return {"name": name, "sha256": digest, "status": status, "warnings": report.get("warnings", [])}


def template_list(args: argparse.Namespace) -> dict:
    from automat_pipeline import templates

    settings, session, tenant = _prepared_tenant(args.tenant)
    with session(settings.database_url) as s:
        users = templates.used_by(s, tenant.id)
        return {
            "tenant": tenant.slug,
            "templates": [
                {
                    "name": v.name,
                    "status": v.status,
                    "sha256": v.sha256,
                    "size_bytes": v.size_bytes,
                    "error_class": v.error_class,
                    "reason": v.reason,
                    "warnings": (v.report or {}).get("warnings", []),
                    "used_by": users.get(v.name, []) if v.status == "ok" else [],
                }
                for v in templates.listing(s, tenant.id)
            ],
        }


def template_delete(args: argparse.Namespace) -> dict:
    from automat_pipeline import templates

    settings, session, tenant = _prepared_tenant(args.tenant)
    with session(settings.database_url) as s, s.begin():
        files = templates.delete(s, tenant, args.template, settings.media_dir)
    for path in files:  # once the rows are gone for good
        path.unlink(missing_ok=True)
    return {"tenant": tenant.slug, "deleted": args.template}


def _prepared_tenant(slug: str):
    """The prepared settings, the session factory and the tenant ``slug`` (unknown: a classified error)."""
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    settings = prepare().settings
    with session(settings.database_url) as s:
        return settings, session, repository.known_tenant(s, slug)


def migrate(args: argparse.Namespace) -> dict:
    from automat_pipeline.embedded import prepare

    settings = prepare().settings
    return {"deployment": settings.deployment, "dagster_home": os.environ["DAGSTER_HOME"]}


def api(args: argparse.Namespace) -> int:
    import uvicorn

    from automat_pipeline.embedded import prepare

    prepare()  # the embedded PostgreSQL it may start stops when this process exits
    uvicorn.run(
        "automat_pipeline.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )
    return 0


def notify(args: argparse.Namespace) -> int:
    import threading

    from automat_pipeline.api.dagster_client import DagsterClient
    from automat_pipeline.embedded import prepare
    from automat_pipeline.notify.deliverer import Deliverer

    settings = prepare().settings
    os.nice(10)  # background work: on a shared CPU the API's requests and the pipeline's runs come first
    deliverer = Deliverer(settings, DagsterClient(settings.dagster_graphql_url))
    try:
        deliverer.run(threading.Event())  # until Ctrl-C or SIGTERM
    finally:
        deliverer.close()
    return 0


def _workflow(args: argparse.Namespace):
    """The validated workflow of ``args.file``; its errors printed (exit 2) if it has any."""
    from automat_pipeline import workflows

    try:
        document = json.loads(Path(args.file).read_text())
    except OSError as error:
        raise AutomatError("missing_file", f"{args.file}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise AutomatError("not_json", f"{args.file}: {error}") from error
    if not isinstance(document, dict):
        raise AutomatError("invalid_workflow", f"{args.file}: a workflow is a JSON object")
    try:
        return workflows.validate(document), []
    except workflows.WorkflowError as error:
        return None, error.errors


def _workflow_errors(args: argparse.Namespace, errors: list[str]) -> int:
    if args.json:
        print(json.dumps({"valid": False, "errors": errors}))
    for error in errors:
        print(f"error: invalid_workflow: {error}", file=sys.stderr)
    return 2


def workflow_validate(args: argparse.Namespace) -> dict | int:
    workflow, errors = _workflow(args)
    if errors:
        return _workflow_errors(args, errors)
    return {"valid": True, "steps": sorted(n.step for n in workflow.nodes)}


def workflow_plan(args: argparse.Namespace) -> dict | int:
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from automat_pipeline import workflows
    from automat_pipeline.embedded import prepare
    from automat_pipeline.keys import split_partition_key

    split_partition_key(args.partition)
    workflow, errors = _workflow(args)
    if errors:
        return _workflow_errors(args, errors)
    prepare()  # the instance's storage is the embedded PostgreSQL
    with DagsterInstance.get() as instance:
        materialized = {
            step
            for step in workflows.upstream_steps(workflow)
            if instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(step), asset_partitions=[args.partition]), limit=1
            ).records
        }
    errors = workflows.missing_upstream(workflow, materialized)
    if errors:
        return _workflow_errors(args, errors)
    plan = workflows.compile_workflow(workflow)
    return {"partition": args.partition, "selection": plan.selection, "run_config": plan.run_config}


def demo(args: argparse.Namespace) -> int:
    from automat_pipeline.demo import run_demo

    return run_demo()


def ui(args: argparse.Namespace) -> int:
    from automat_pipeline.ui import serve

    return serve(port=args.port, api_port=args.api_port)


def summary(name: str, result: dict) -> str:
    """The human-readable one-liner for commands that return a result."""
    if name == "cad convert":
        return (
            f"{result['glb']}: {len(result['parts'])} parts, {result['triangles']} triangles, "
            f"{result['glb_bytes']} bytes in {result['total_seconds']} s"
        )
    if name == "render-host warm":
        return f"{result['host']}: {result['device']} ({result['backend']}), kernel cache warm: {result['warm']}"
    if name.startswith("render "):
        return f"{result['output']}: {result['engine']} on {result['device']} in {result['render_seconds']} s"
    if name == "catalog check":
        lines = [
            f"sheet {t['sheet']!r}: header in row {t['header_row']}, {t['rows']} data rows" for t in result["tables"]
        ]
        lines.append(f"{len(result['accepted'])} accepted, {len(result['rejected'])} rejected")
        lines += [f"  {r['sheet']}!{r['row']}: {r['reason']}" for r in result["rejected"]]
        return "\n".join(lines)
    if name == "catalog import":
        return f"import {result['import_id']}: {result['counts']}; report {result['report']}\n" + "\n".join(
            f"  {r['sheet']}!{r['row']}: {r['reason']}" for r in result["rejected"]
        )
    if name in ("user list", "tenant list"):  # a row a line: its values, then active or inactive
        rows = result["users" if name == "user list" else "tenants"]
        return "\n".join(
            "  ".join(["-" if v is None else str(v) for k, v in row.items() if k != "active"])
            + ("  active" if row["active"] else "  inactive")
            for row in rows
        )
    if name == "template list":
        return "\n".join(
            f"{t['name']}: {t['status']} {t['sha256'][:12]}"
            + (f" ({t['error_class']}: {t['reason']})" if t["reason"] else "")
            + (f", used by {', '.join(t['used_by'])}" if t["used_by"] else "")
            for t in result["templates"]
        )
    if name == "template upload":
        return f"{result['name']}: {result['status']}" + "".join(f"; {w}" for w in result["warnings"])
    return json.dumps(result)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="automat", description=__doc__.splitlines()[0])
    groups = root.add_subparsers(dest="group", required=True)

    subcommands: dict[str, argparse._SubParsersAction] = {}

    def command(path: str, func, help: str, answers: bool = True) -> argparse.ArgumentParser:
        """A command ``group name`` (or ``group``); ``answers``: it prints a result, and --json asks for it as JSON."""
        group, _, name = path.partition(" ")
        if not name:
            p = groups.add_parser(group, help=help)
        else:
            if group not in subcommands:
                subcommands[group] = groups.add_parser(group).add_subparsers(dest="command", required=True)
            p = subcommands[group].add_parser(name, help=help)
        p.set_defaults(func=func, name=path)
        if answers:
            p.add_argument("--json", action="store_true")
        return p

    p = command("cad convert", cad_convert, "convert one STEP file to a binary GLB, in an isolated process")
    p.add_argument("step")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--production", help="also write the production GLB (shipped material library)")
    p.add_argument("--timeout", type=float, default=300, help="seconds before the conversion is killed")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory before the conversion is killed")
    for kind, help in (
        ("thumbnail", "render a transparent PNG of a GLB with Blender"),
        ("still", "render a GLB as one of a tenant's (or the shipped) still output types"),
        ("turntable", "render an MP4 of the camera circling a GLB with Blender"),
    ):
        p = command(f"render {kind}", render, help)
        p.set_defaults(kind=kind)
        p.add_argument("glb")
        p.add_argument("-o", "--output", required=True)
        p.add_argument("--tenant", help="use the tenant's material library, templates and output types")
        if kind == "still":
            p.add_argument("--output-type", required=True, help="the still output type's name, e.g. still-web")
            continue
        p.add_argument("--size", type=int, default=256 if kind == "thumbnail" else 512)
        p.add_argument("--engine", choices=["cycles", "eevee", "workbench"], default="cycles")
        p.add_argument("--samples", type=int, default=16)
        p.add_argument("--camera", choices=["iso", "front", "top"], default="iso")
        p.add_argument(
            "--device", choices=["gpu", "cpu"], help="where Cycles renders (default: the tenant's setting, or gpu)"
        )
        p.add_argument("--no-ground-shadow", dest="ground_shadow", action="store_false", help="no shadow under it")
        p.add_argument("--timeout", type=float, default=300, help="seconds before Blender is stopped")
        if kind == "turntable":
            p.add_argument("--frames", type=int, default=36)
    p = command(
        "render-host warm",
        render_host_warm,
        "probe this host's GPU and compile Cycles' kernels into the cache, before it takes work",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds (a card's first compile takes minutes)")
    p.add_argument("--status-file", help="write the result here when done (the render image's healthcheck)")
    p.add_argument("--every", type=float, help="then probe again every so many seconds, until stopped")
    p = command("catalog check", catalog_check, "parse a product list without writing anything")
    p.add_argument("xlsx")
    p = command("catalog import", catalog_import, "import a product list into a tenant's catalogue")
    p.add_argument("xlsx")
    p.add_argument("--tenant", required=True)
    p = command("tenant create", tenant_create, "create a tenant, its partition and its upload inbox")
    p.add_argument("name")
    command("demo", demo, "set up the embedded stack, fill a demo inbox, run the pipeline", answers=False)
    p = command("user create", user_create, "create an API user (password from stdin or AUTOMAT_USER_PASSWORD)")
    p.add_argument("--tenant", help="the user's tenant (not for global_admin)")
    p.add_argument("--role", required=True, choices=["global_admin", "tenant_admin", "project_manager", "client"])
    p.add_argument("--email", required=True)
    p = command("material list", material_list, "a tenant's material library: shipped and its own")
    p.add_argument("--tenant", required=True)
    p = command("material set", material_set, "add or replace a tenant's own material (linear RGB, PBR 0..1)")
    p.add_argument("material_name", metavar="NAME")
    p.add_argument("--tenant", required=True)
    p.add_argument("--color", type=float, nargs=3, required=True, metavar=("R", "G", "B"))
    p.add_argument("--metallic", type=float, required=True)
    p.add_argument("--roughness", type=float, required=True)
    p.add_argument("--description", default="")
    p = command("material delete", material_delete, "delete a tenant's own material (an override: the shipped returns)")
    p.add_argument("material_name", metavar="NAME")
    p.add_argument("--tenant", required=True)
    p = command("alias list", alias_list, "a tenant's own aliases, in the order they are tried")
    p.add_argument("--tenant", required=True)
    p = command("alias set", alias_set, "replace a tenant's aliases: PATTERN=MATERIAL ..., tried in this order")
    p.add_argument("aliases", nargs="*", metavar="PATTERN=MATERIAL")
    p.add_argument("--tenant", required=True)
    p = command("user list", user_list, "list users (of one tenant with --tenant)")
    p.add_argument("--tenant")
    for name, help in (
        ("deactivate", "deactivate a user: signed out at once, cannot log in"),
        ("activate", "let a deactivated user log in again"),
        ("role", "change a user's role: signed out at once, logs in again"),
    ):
        p = command(f"user {name}", user_change, help)
        p.add_argument("--email", required=True)
        if name == "role":
            p.add_argument("--role", required=True, choices=["tenant_admin", "project_manager", "client"])
    p = command("user reset-password", user_reset_password, "a one-time token to set a new password with")
    p.add_argument("--email", required=True)
    p = command("tenant list", tenant_list, "list tenants")
    for name, help in (
        ("deactivate", "deactivate a tenant: users out, uploads and submitted lines wait"),
        ("activate", "reactivate a tenant: everything resumes"),
    ):
        p = command(f"tenant {name}", tenant_change, help)
        p.add_argument("name")
    p = command("workflow validate", workflow_validate, "check a workflow file (exit 2 with its errors)")
    p.add_argument("file")
    p = command("workflow plan", workflow_plan, "the asset selection and run config a workflow would launch")
    p.add_argument("file")
    p.add_argument("--partition", required=True, help="TENANT|PRODUCT")
    p = command("template upload", template_upload, "store a render template (.blend) and check it in Blender")
    p.add_argument("file")
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", dest="template", help="the template's name (default: the file's name)")
    p = command("template list", template_list, "a tenant's render templates and their checks")
    p.add_argument("--tenant", required=True)
    p = command("template delete", template_delete, "delete a render template no output type names")
    p.add_argument("template", help="its name, e.g. studio.blend")
    p.add_argument("--tenant", required=True)
    p = command(
        "migrate",
        migrate,
        "migrate the domain database and write the Dagster instance of "
        "AUTOMAT_DEPLOYMENT (production runs it once before the services start)",
    )
    p = command("api", api, "the orders API (FastAPI) on the embedded stack", answers=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes (default: one per CPU)")
    command(
        "notify", notify, "the deliverer: fans out events, sends e-mails and webhooks, raises alerts", answers=False
    )
    p = command(
        "ui", ui, "Dagster webserver + daemon + orders API on the embedded stack (Ctrl-C stops all)", answers=False
    )
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--api-port", type=int, default=8000)
    return root


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM (and SIGINT, even when a background start ignores it) unwinds like Ctrl-C, so child
    # processes (Blender, the Dagster webserver and daemon, PostgreSQL) are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted: stopped by a signal", file=sys.stderr)
        return 130
    except AutomatError as error:
        print(f"error: {error.error_class}: {error.reason}", file=sys.stderr)
        return 2
    except Exception as error:  # the contract: a one-line reason, never a traceback
        print(f"error: internal_error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1
    finally:  # cleanup is done: a late signal must not turn the exit into a traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if isinstance(result, int):
        return result
    print(json.dumps(result) if args.json else summary(args.name, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
