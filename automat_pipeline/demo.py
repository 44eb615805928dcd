"""``automat demo``: the whole path on the embedded defaults, from an empty folder to thumbnails.

It fills the demo tenant's inbox, then lets the real upload sensor decide what to run and runs
that in-process on the persistent Dagster instance: a run per request, tagged as the sensor
daemon would tag it, so a second demo (or ``automat ui``'s daemon later) finds every run key
already done and repeats nothing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    RunsFilter,
    build_sensor_context,
)
from openpyxl import Workbook

from automat_pipeline.bearings import CATALOGUE, write_step
from automat_pipeline.db import repository
from automat_pipeline.definitions import defs
from automat_pipeline.defs.partitions import tenant_partitions
from automat_pipeline.defs.resources import Database, MediaStore, resources_from
from automat_pipeline.defs.uploads.sensor import upload_sensor
from automat_pipeline.embedded import prepare
from automat_pipeline.keys import partition_key, split_partition_key, tenant_of
from automat_pipeline.redirect import redirected
from automat_pipeline.settings import Settings
from automat_pipeline.tags import PARTITION_RANGE_START

TENANT = "demo"
FIXTURES = Settings().fixtures_dir / "step"
# Real files from real CAD systems, and one a CAD pipeline must refuse (an AP209 FEA model).
REAL_FILES = [
    ("FC-6201-2RS", "Ball bearing 6201-2RS (FreeCAD library)", "freecad-library/6201-2RS_Ball_Bearing.step"),
    ("CAXIF-AS1", "CAx-IF AS1 assembly", "occt-import-js/as1-oc-214.stp"),
    ("ONSHAPE-CUBE-CYL", "Red cube, blue cylinder (Onshape)", "cadquery/red_cube_blue_cylinder.step"),
    ("FEA-ATS1", "AP209 analysis model (must be refused)", "stepcode/ATS1-out.stp"),
]
# Cages come from the catalogue; rings and rolling elements resolve through the default aliases.
CAGES = {
    "deep_groove_ball": "SCHAEFFLER_020201_Brass-Cage",
    "tapered_roller": "SCHAEFFLER_020201_Brass-Cage",
    "cylindrical_roller": "SCHAEFFLER_030301_Polyamide-Cage",
    "thrust_ball": "SCHAEFFLER_030301_Polyamide-Cage",
}
STEPS = ["step_file", "cad_metadata", "glb_geometry", "glb_production", "thumbnail"]
SENSOR_TAGS = {"dagster/sensor_name": upload_sensor.name}


def fill_inbox(inbox: Path) -> None:
    """Write what is missing; existing files stay byte-identical, so nothing re-runs."""
    inbox.mkdir(parents=True, exist_ok=True)
    rows = [(b.pim_id, b.name, b.lagertyp, f"{b.pim_id}.step", f"Cage={CAGES[b.kind]}") for b in CATALOGUE]
    for bearing in CATALOGUE:
        if not (inbox / f"{bearing.pim_id}.step").exists():
            write_step(bearing, inbox / f"{bearing.pim_id}.step")
    for pim_id, name, source in REAL_FILES:
        target = inbox / Path(source).name
        if FIXTURES.joinpath(source).is_file() and not target.exists():
            shutil.copyfile(FIXTURES / source, target)
        if target.exists():
            rows.append((pim_id, name, "", target.name, ""))
    catalogue = inbox / "produktliste.xlsx"
    if not catalogue.exists():
        sheet = (workbook := Workbook()).active
        sheet.title = "Produkte"
        sheet.append(["PIM-ID", "Bezeichnung", "Lagertyp", "STEP-Datei", "Materialien"])
        for row in rows:
            sheet.append(list(row))
        workbook.save(catalogue)


def run_requested(
    instance: DagsterInstance, database: Database, media: MediaStore, log: Path, cursor: str | None
) -> tuple[list[dict], str | None]:
    """One sensor tick; run each request not already run; return what ran and the sensor's cursor."""
    result = upload_sensor(
        build_sensor_context(instance=instance, cursor=cursor, resources={"database": database, "media": media})
    )
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    ran = []
    for request in result.run_requests or []:
        tags = {**SENSOR_TAGS, "dagster/run_key": request.run_key, **request.tags}
        if instance.get_run_records(RunsFilter(tags={**SENSOR_TAGS, "dagster/run_key": request.run_key}), limit=1):
            continue
        started = time.perf_counter()
        with log.open("a") as out, redirected(out.fileno(), 1, 2):  # Dagster's console log, Blender
            outcome = defs.resolve_job_def(request.job_name).execute_in_process(
                run_config=request.run_config,
                instance=instance,
                partition_key=request.partition_key,
                asset_selection=request.asset_selection,
                tags=tags,
                raise_on_error=False,
            )
        ran.append(
            {
                "job": request.job_name,
                "partition": request.partition_key or request.tags.get(PARTITION_RANGE_START),
                "success": outcome.success,
                "seconds": time.perf_counter() - started,
            }
        )
    return ran, result.cursor


def latest_metadata(instance: DagsterInstance, asset: str, partition: str) -> dict | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def failure_reason(database: Database, partition: str) -> str | None:
    """Why the product has no thumbnail, as the pipeline recorded it: its upload's rejection, or its
    thumbnail's failure."""
    with database.session(tenant_of(partition)) as session:
        tenant, product = repository.tenant_and_product(session, partition)
        return repository.media_failure(session, tenant.id, product.id)


def report(instance: DagsterInstance, database: Database, keys: list[str]) -> list[dict]:
    """One row per product: its outputs, or why its latest run failed."""
    rows = []
    for key in keys:
        meta = {step: latest_metadata(instance, step, key) for step in STEPS}
        rows.append(
            {
                "product": split_partition_key(key)[1],
                "parts": (meta["cad_metadata"] or {}).get("parts"),
                "triangles": (meta["glb_geometry"] or {}).get("triangles"),
                "glb": (meta["glb_geometry"] or {}).get("path"),
                "thumbnail": (meta["thumbnail"] or {}).get("path"),
                "seconds": {step: (meta[step] or {}).get("seconds") for step in STEPS},
                "error": failure_reason(database, key),
            }
        )
    return rows


def print_table(rows: list[dict], home: Path) -> None:
    header = f"{'product':18} {'parts':>5} {'triangles':>9}  {'s/step (file,meta,glb,prod,thumb)':34} outputs or error"
    print(header)
    print("-" * len(header))
    for r in rows:
        secs = ",".join("-" if r["seconds"][s] is None else f"{r['seconds'][s]:.2f}" for s in STEPS)
        where = (
            f"{Path(r['glb']).relative_to(home)}  {Path(r['thumbnail']).relative_to(home)}"
            if r["thumbnail"]
            else f"ERROR {r['error'] or 'not produced; see the Dagster run log'}"
        )
        print(f"{r['product']:18} {r['parts'] or '-':>5} {r['triangles'] or '-':>9}  {secs:34} {where}")


def run_demo() -> int:
    started = time.perf_counter()
    settings = prepare().settings
    resources = resources_from(settings)
    database, media = resources["database"], resources["media"]
    with database.session(owner=True) as s:  # administration: the demo's tenant is made if missing
        repository.tenant(s, TENANT)
    fill_inbox(media.inbox(TENANT))
    log = settings.home / "demo.log"
    print(f"running the pipeline; run output goes to {log} and the Dagster event log")
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(tenant_partitions.name, [TENANT])
        ran: list[dict] = []
        # The catalogue run registers products; the next tick requests their media chain in a batch; the
        # tick after that goes on for the products a failing one held up. The cursor goes from tick to tick.
        batch, cursor = run_requested(instance, database, media, log, None)
        while batch:
            ran += batch
            batch, cursor = run_requested(instance, database, media, log, cursor)
        with database.session(TENANT) as s:
            tenant = repository.tenant(s, TENANT, create=False)
            keys = [partition_key(TENANT, p.key) for p in repository.active_products(s, tenant.id)]
        rows = report(instance, database, keys)
    print_table(rows, settings.home)
    wall = time.perf_counter() - started
    print(
        f"\n{len(ran)} runs this time ({sum(not r['success'] for r in ran)} failed) in {wall:.1f} s; "
        f"media under {settings.media_dir}"
    )
    unexplained = [r["product"] for r in rows if not r["thumbnail"] and not r["error"]]
    if unexplained:
        print(f"no thumbnail and no recorded reason for: {', '.join(unexplained)}")
    return 1 if unexplained else 0
