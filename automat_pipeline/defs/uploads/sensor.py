"""``upload_sensor``: turns new file contents in ``uploads/<tenant>/`` into runs, each exactly once.

Each tick

1. looks at every inbox file (one stat each) and hashes only those whose stat fingerprint moved
   since a tick last saw them (``inbox_files``): changed content is new whatever its modification
   time says; the same bytes touched or dropped again are not;
2. per tenant: new workbooks request the tenant's catalogue import; new STEP files request the
   media chain of every product that names them (one query for all of them); a new file the
   pipeline cannot take (another kind, a symbolic link, a name that is no UTF-8 or that no product
   list can write) is recorded as rejected with its reason, and stays;
3. per successful import not dispatched yet: the media chain of each product whose media inputs it
   changed (created; STEP file name, material assignments or activity changed), if its STEP file
   is in the inbox;
4. requests a product only if its media inputs — the STEP file's content, its material
   assignments, the tenant's library, aliases, fallback material and CAD settings — differ from
   those last requested for it (``media_requests``): the same inputs never run twice;
5. runs a tenant's requested products in batches: ranges of consecutive product partitions, up to
   ``BATCH`` products a run (one run worker, one OpenCascade forkserver, one warm Blender);
6. continues batch runs whose step failed for some of their products, for the others, from the
   next step.

Each tenant's part of a tick runs as the pipeline's role with that tenant set (row-level security,
migration 0022), so a query that forgets its tenant filter sees that tenant's rows only; which
tenants have work (whose inbox folder is whose, imports not dispatched, a lost tick's requests)
comes from narrow security-definer functions. A tenant's part of a tick is rolled back if it fails,
and one import's or its uploads' failure is logged (an import's also in ``catalog_imports``); all are
retried next tick, and the others go on. The cursor names the last tick whose result Dagster
stored, so what a lost tick (a crash, the evaluation time-out) wrote is taken up again. A
product's own run key is ``<tenant>|<product>@<media key>``; a batch's names its range and a
digest of its members'.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy.orm import Session

from automat_pipeline.db import repository
from automat_pipeline.db.database import as_tenant
from automat_pipeline.db.models import Tenant
from automat_pipeline.defs.jobs import MEDIA_STEPS, assets_after, import_catalog_job, product_media_job
from automat_pipeline.defs.partitions import product_partitions, tenant_partitions
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.inbox import Upload, scan, step_names
from automat_pipeline.keys import partition_key
from automat_pipeline.notify import events
from automat_pipeline.settings import Settings

BATCH = Settings().media_batch  # AUTOMAT_MEDIA_BATCH: products per media run at most (bench/run.py daemon)


@dataclass
class Cursor:
    tick: int | None = None  # the last tick whose result Dagster stored
    failures_after: float = 0.0  # batch runs that failed before this were continued

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        return cls(**json.loads(text)) if text else cls(failures_after=time.time())

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class Media:
    """A product whose media chain is wanted, and the key of its inputs."""

    tenant: str
    product_id: int
    partition: str
    media_key: str


@sensor(
    jobs=[import_catalog_job, product_media_job],
    minimum_interval_seconds=1,  # each turn of the daemon's sensor loop (5 s); an idle tick costs ~0.2 s
    default_status=DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: SensorEvaluationContext, database: Database, media: MediaStore):
    """Watch every tenant inbox for new workbook and STEP contents, and the catalogue for changed products."""
    started = time.perf_counter()
    cursor = Cursor.parse(context.cursor)
    failures_checked = time.time()
    inboxes: dict[str, list[Upload]] = defaultdict(list)
    for upload in scan(media.uploads_dir):
        inboxes[upload.tenant].append(upload)
    requests: dict[str, RunRequest] = {}
    products: list[Media] = []
    with database.session() as session:  # the pipeline's role: no tenant's rows but the one named
        tick = repository.next_sensor_tick(session)
        tenants = repository.tenants_by_slug(session)
        for folder in sorted(set(inboxes) - set(tenants)):
            context.log.warning(f"[upload_sensor] {folder!r} is not a known tenant; {len(inboxes[folder])} files wait")
        busy = {tenants[folder].id for folder in inboxes if folder in tenants}
        busy.update(repository.undispatched_tenants(session))
        if cursor.tick is not None:  # requests of a tick whose result Dagster never stored
            busy.update(repository.requested_tenants(session, cursor.tick))
        for tenant in sorted((t for t in tenants.values() if t.id in busy), key=lambda t: t.slug):
            as_tenant(session, tenant.id)
            try:
                with session.begin_nested():  # one tenant's failure must not stop the others
                    request, wanted = _tenant_tick(
                        context, session, media, tenant.id, inboxes[tenant.slug], tick, cursor
                    )
            except Exception as error:  # rolled back, so retried next tick: its files are still new
                context.log.error(f"[upload_sensor] {tenant.slug}: {type(error).__name__}: {error}; retried next tick")
                continue
            products += wanted
            if request:
                requests[request.run_key] = request

    order = context.instance.get_dynamic_partitions(product_partitions.name) if products else []
    new_partitions = sorted({m.partition for m in products} - set(order))
    for request in _batches(products, order + new_partitions):
        requests[request.run_key] = request
    for request in _continue_failed_batches(context, cursor.failures_after):
        requests[request.run_key] = request
    imports = {r.partition_key for r in requests.values() if r.job_name == import_catalog_job.name}
    new_tenants = sorted(imports - set(context.instance.get_dynamic_partitions(tenant_partitions.name)))
    next_cursor = Cursor(tick, failures_checked).dump()
    with database.session() as session:
        repository.observe(session, "sensor_tick", "upload_sensor", "", time.perf_counter() - started)
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new uploads or products"), cursor=next_cursor)
    return SensorResult(
        run_requests=list(requests.values()),
        cursor=next_cursor,
        dynamic_partitions_requests=[
            AddDynamicPartitionsRequest(definition.name, keys)
            for definition, keys in ((tenant_partitions, new_tenants), (product_partitions, new_partitions))
            if keys
        ],
    )


def _tenant_tick(
    context: SensorEvaluationContext,
    session: Session,
    media: MediaStore,
    tenant_id: int,
    uploads: list[Upload],
    tick: int,
    cursor: Cursor,
) -> tuple[RunRequest | None, list[Media]]:
    """One tenant's part of a tick, in a transaction that sees its rows only: its catalogue import
    request, if new workbooks want one, and the products whose media chain it requests."""
    tenant = session.get(Tenant, tenant_id)
    digests, new = _track(session, tenant, uploads, tick, cursor)
    wanted = _Wanted(session, media, tenant, uploads, digests)
    request = None
    if new and not tenant.active:
        context.log.warning(f"[upload_sensor] {tenant.slug!r} is deactivated; {len(new)} files wait")
    elif new:
        try:
            with session.begin_nested():  # its uploads' failure must not stop its imports
                events.uploads_received(session, tenant.id, [(u.name, digests[u.path], u.kind) for u in new])
                taken = _taken(context, session, tenant, new, digests)
                steps = [u.path.name for u in taken if u.kind == "step"]
                wanted.add(repository.products_naming(session, tenant.id, steps), steps)
            request = _import_request(tenant, taken, digests)
        except Exception as error:  # logged, and retried: its files stay new until a tick takes them
            context.log.error(f"[upload_sensor] {tenant.slug}: {type(error).__name__}: {error}; retried next tick")
            repository.forget_inbox(session, tenant.id, [u.name for u in new])
    for record in repository.undispatched_imports(session, tenant.id):
        try:
            with session.begin_nested():
                wanted.add(repository.import_media_products(session, record))
                record.dispatched, record.dispatch_error = True, None
        except Exception as error:  # stored with the import, and retried next tick
            record.dispatch_error = f"{type(error).__name__}: {error}"
            context.log.error(f"[upload_sensor] import {record.id}: {record.dispatch_error}; retried next tick")
    if cursor.tick is not None and (lost := repository.media_requested_after(session, tenant.id, cursor.tick)):
        try:
            with session.begin_nested():
                wanted.add(lost, uncommitted=cursor.tick)
        except Exception as error:
            context.log.error(f"[upload_sensor] {tenant.slug}: {type(error).__name__}: {error}")
    return request, wanted.requested(tick)


def _track(
    session: Session, tenant: Tenant, uploads: list[Upload], tick: int, cursor: Cursor
) -> tuple[dict[Path, str], list[Upload]]:
    """Every upload's sha256, and the uploads whose content is new to the sensor: changed since a tick
    saw it, or changed in a tick whose result was lost. Only files whose stat fingerprint moved are read.
    Files of a deactivated tenant are not recorded: they stay new until it is reactivated."""
    state = repository.inbox_state(session, tenant.id)
    digests, new, rows = {}, [], []
    for upload in uploads:
        seen = state.get(upload.name)
        if seen is not None and (seen.size_bytes, seen.mtime_ns, seen.ctime_ns, seen.inode) == upload.fingerprint:
            digests[upload.path] = seen.sha256
            if cursor.tick is not None and seen.changed_tick > cursor.tick:
                new.append(upload)
            continue
        try:
            digest = digests[upload.path] = upload.version()
        except OSError:  # gone or unreadable since the scan: the next tick sees what is there then
            continue
        changed = seen is None or seen.sha256 != digest
        if changed or (cursor.tick is not None and seen.changed_tick > cursor.tick):
            new.append(upload)
        if tenant.active:
            size, mtime, ctime, inode = upload.fingerprint
            rows.append(
                {
                    "filename": upload.name,
                    "size_bytes": size,
                    "mtime_ns": mtime,
                    "ctime_ns": ctime,
                    "inode": inode,
                    "sha256": digest,
                    "changed_tick": tick if changed else seen.changed_tick,
                }
            )
    repository.record_inbox(session, tenant.id, rows)
    return digests, new


def _taken(
    context: SensorEvaluationContext, session: Session, tenant: Tenant, new: list[Upload], digests: dict[Path, str]
) -> list[Upload]:
    """The new uploads the pipeline can take; each other one is recorded as rejected with its reason
    (``Upload.refusal``), once per content, and stays in the inbox."""
    taken = []
    for upload in new:
        error = upload.refusal()
        if error is None:
            taken.append(upload)
            continue
        context.log.warning(f"[upload_sensor] {tenant.slug}: {error}")
        kind = upload.kind or "other"
        repository.record_file(session, tenant.id, upload.path, kind, digests[upload.path], error=str(error))
    return taken


def _import_request(tenant: Tenant, new: list[Upload], digests: dict[Path, str]) -> RunRequest | None:
    """The tenant's catalogue import of its new workbooks, keyed by their contents."""
    workbooks = sorted((u for u in new if u.kind == "catalog"), key=lambda u: u.path.name)
    if not workbooks:
        return None
    versions = "".join(f"{u.path.name}@{digests[u.path]}" for u in workbooks)
    names = [u.path.name for u in workbooks]
    return RunRequest(
        run_key=f"catalog:{tenant.slug}@{hashlib.sha256(versions.encode()).hexdigest()[:16]}",
        job_name=import_catalog_job.name,
        partition_key=tenant.slug,
        run_config={"ops": {"product_catalog": {"config": {"workbooks": names, "trigger": "sensor"}}}},
    )


class _Wanted:
    """A tenant's products whose media chain a tick wants, with their STEP file's content and their inputs' key."""

    def __init__(self, session: Session, media: MediaStore, tenant: Tenant, uploads: list[Upload], digests):
        self.session, self.media, self.tenant, self.digests = session, media, tenant, digests
        self.inbox = {u.path.name for u in uploads if u.kind == "step" and u.refusal() is None}
        self.inputs: str | None = None
        self.found: dict[int, tuple[Media, int | None]] = {}

    def add(self, products, only: list[str] | None = None, uncommitted: int | None = None) -> None:
        """Want ``products`` (rows with ``repository.MEDIA_COLUMNS``) whose STEP file is in the inbox
        (and is one of ``only``, if given); ``uncommitted``: request them even with the same inputs."""
        tenant = self.tenant
        if self.inputs is None:
            self.inputs = repository.media_inputs(self.session, tenant)
        only = set(only) if only is not None else None
        found = {}
        for product in products:
            name = next((n for n in step_names(product) if n in self.inbox), None)
            if name is None or (only is not None and name not in only):
                continue
            content = self.digests[self.media.inbox(tenant.slug) / name]
            materials = json.dumps(product.materials or {}, sort_keys=True)
            inputs = hashlib.sha256((self.inputs + materials).encode()).hexdigest()
            partition = partition_key(tenant.slug, product.key)
            found[product.id] = (
                Media(tenant.slug, product.id, partition, f"{content[:16]}-{inputs[:16]}"),
                uncommitted,
            )
        self.found.update(found)  # all of them or, if anything above raised, none

    def requested(self, tick: int) -> list[Media]:
        """The wanted products whose inputs differ from those last requested (or whose request a lost
        tick made), remembered as requested by ``tick``."""
        if not self.found:
            return []
        before = repository.media_requested(self.session, self.tenant.id, list(self.found))
        wanted = [
            media
            for media, uncommitted in self.found.values()
            if (last := before.get(media.product_id)) is None
            or last.media_key != media.media_key
            or (uncommitted is not None and last.tick > uncommitted)
        ]
        keys = {m.product_id: m.media_key for m in wanted}
        repository.record_media_requests(self.session, self.tenant.id, keys, tick)
        return wanted


def ranges(order: list[str], wanted: set[str], size: int = BATCH) -> list[list[str]]:
    """``wanted`` as runs of keys consecutive in ``order`` (the partitions' order), at most ``size`` each."""
    found, current = [], []
    for key in order:
        if key in wanted:
            current.append(key)
            if len(current) == size:
                found.append(current)
                current = []
        elif current:
            found.append(current)
            current = []
    return found + [current] if current else found


def media_request(run_key: str, keys: list[str], assets: list[str] | None = None) -> RunRequest:
    """A run of the media chain (or of ``assets`` of it) for one product, or a range of products."""
    selection = [AssetKey(a) for a in assets] if assets else None
    if len(keys) == 1:
        return RunRequest(
            run_key=run_key, job_name=product_media_job.name, partition_key=keys[0], asset_selection=selection
        )
    return RunRequest(
        run_key=run_key,
        job_name=product_media_job.name,
        asset_selection=selection,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )


def _batches(products: list[Media], order: list[str]) -> list[RunRequest]:
    """The media runs of ``products``: per tenant, ranges of partitions consecutive in ``order``."""
    by_partition = {m.partition: m for m in products}
    requests = []
    tenants = {m.tenant for m in products}
    for keys in (k for t in sorted(tenants) for k in ranges(order, {m.partition for m in products if m.tenant == t})):
        members = [f"{k}@{by_partition[k].media_key}" for k in keys]
        if len(keys) == 1:
            requests.append(media_request(members[0], keys))
        else:
            digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
            requests.append(media_request(f"{keys[0]}..{keys[-1]}@{digest}", keys))
    return requests


def _continue_failed_batches(context: SensorEvaluationContext, after: float) -> list[RunRequest]:
    """For each batch run that failed since ``after`` because its step failed for some products
    (the step's failure metadata ``failed`` names them), a run of the next steps for the others.
    A run this cannot make sense of is logged and left alone."""
    instance, requests = context.instance, []
    failed_runs = instance.get_run_records(
        RunsFilter(
            job_name=product_media_job.name,
            statuses=[DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(after, UTC),
        )
    )
    for record in failed_runs:
        try:
            requests += _continuations(instance, record.dagster_run)
        except Exception as error:
            context.log.error(f"[upload_sensor] run {record.dagster_run.run_id}: {type(error).__name__}: {error}")
    return requests


def _continuations(instance: DagsterInstance, run) -> list[RunRequest]:
    requests = []
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start is not None:
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE):
            step = entry.dagster_event.step_key
            failure = entry.dagster_event.step_failure_data.user_failure_data
            failed = failure.metadata.get("failed") if failure else None
            if step not in MEDIA_STEPS or failed is None or not assets_after(step):
                continue
            order = instance.get_dynamic_partitions(product_partitions.name)
            keys = order[order.index(start) : order.index(end) + 1]
            for chunk in ranges(keys, set(keys) - set(failed.value)):
                requests.append(
                    media_request(f"{run.run_id}:{step}:{chunk[0]}..{chunk[-1]}", chunk, assets_after(step))
                )
    return requests
