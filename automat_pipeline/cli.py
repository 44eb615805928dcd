"""``automat``: the command line operators and scripts rely on.

Contract for every command that reads a file: on bad input, exit 2 with one line
``error: <class>: <reason>`` on stderr and never a traceback; with ``--json``, stdout holds exactly
one JSON object.
"""

from __future__ import annotations

import argparse
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

    settings = prepare().settings
    with session(settings.database_url) as s:
        tenant = repository.tenant(s, args.tenant, create=False)
        if tenant is None:
            raise AutomatError("unknown_tenant", f"tenant {args.tenant!r} does not exist (automat tenant create)")
        if args.kind == "still":
            output_type = _named_output_type(repository.tenant_output_types(s, tenant, "still"), args.output_type)
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
    return json.dumps(result)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="automat", description=__doc__.splitlines()[0])
    groups = root.add_subparsers(dest="group", required=True)

    subcommands: dict[str, argparse._SubParsersAction] = {}

    def command(path: str, func, help: str) -> argparse.ArgumentParser:
        group, _, name = path.partition(" ")
        if not name:
            p = groups.add_parser(group, help=help)
        else:
            if group not in subcommands:
                subcommands[group] = groups.add_parser(group).add_subparsers(dest="command", required=True)
            p = subcommands[group].add_parser(name, help=help)
        p.set_defaults(func=func, name=path)
        return p

    p = command("cad convert", cad_convert, "convert one STEP file to a binary GLB, in an isolated process")
    p.add_argument("step")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--production", help="also write the production GLB (shipped material library)")
    p.add_argument("--timeout", type=float, default=300, help="seconds before the conversion is killed")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory before the conversion is killed")
    p.add_argument("--json", action="store_true")
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
        p.add_argument("--json", action="store_true")
        if kind == "still":
            p.add_argument("--output-type", required=True, help="the still output type's name, e.g. still-web")
            continue
        p.add_argument("--size", type=int, default=256 if kind == "thumbnail" else 512)
        p.add_argument("--engine", choices=["cycles", "eevee", "workbench"], default="cycles")
        p.add_argument("--samples", type=int, default=16)
        p.add_argument("--camera", choices=["iso", "front", "top"], default="iso")
        p.add_argument("--timeout", type=float, default=300, help="seconds before Blender is stopped")
        if kind == "turntable":
            p.add_argument("--frames", type=int, default=36)
    p = command("catalog check", catalog_check, "parse a product list without writing anything")
    p.add_argument("xlsx")
    p.add_argument("--json", action="store_true")
    p = command("catalog import", catalog_import, "import a product list into a tenant's catalogue")
    p.add_argument("xlsx")
    p.add_argument("--tenant", required=True)
    p.add_argument("--json", action="store_true")
    p = command("tenant create", tenant_create, "create a tenant, its partition and its upload inbox")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    command("demo", demo, "set up the embedded stack, fill a demo inbox, run the pipeline")
    p = command("user create", user_create, "create an API user (password from stdin or AUTOMAT_USER_PASSWORD)")
    p.add_argument("--tenant", help="the user's tenant (not for global_admin)")
    p.add_argument("--role", required=True, choices=["global_admin", "tenant_admin", "project_manager", "client"])
    p.add_argument("--email", required=True)
    p.add_argument("--json", action="store_true")
    p = command("workflow validate", workflow_validate, "check a workflow file (exit 2 with its errors)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p = command("workflow plan", workflow_plan, "the asset selection and run config a workflow would launch")
    p.add_argument("file")
    p.add_argument("--partition", required=True, help="TENANT|PRODUCT")
    p.add_argument("--json", action="store_true")
    p = command(
        "migrate",
        migrate,
        "migrate the domain database and write the Dagster instance of "
        "AUTOMAT_DEPLOYMENT (production runs it once before the services start)",
    )
    p.add_argument("--json", action="store_true")
    p = command("api", api, "the orders API (FastAPI) on the embedded stack")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes (default: one per CPU)")
    command("notify", notify, "the deliverer: fans out events, sends e-mails and webhooks, raises alerts")
    p = command("ui", ui, "Dagster webserver + daemon + orders API on the embedded stack (Ctrl-C stops all)")
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
