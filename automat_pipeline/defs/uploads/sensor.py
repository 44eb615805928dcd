"""``upload_sensor``: turns new file versions in ``uploads/<tenant>/`` into runs, each exactly once.

A workbook requests the tenant's catalogue import of that workbook. A STEP file requests the media
chain of every product that names it. A product that an import creates or changes requests the
chain for its STEP file, if one is already in the inbox (imports are marked dispatched, so that
happens once). Run keys are ``<tenant>|<product>@<sha256 prefix>``: the same bytes never run twice
for a product, changed bytes always do. A file the pipeline cannot take (another kind, a symbolic
link, a STEP file no product list can name) is recorded as rejected with its reason. The cursor
holds a modification-time high-water mark and the files of tenants that do not exist yet, so it
stays as small as that.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from automat_pipeline.db import repository
from automat_pipeline.defs.jobs import import_catalog_job, product_media_job
from automat_pipeline.defs.partitions import product_partitions, tenant_partitions
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.inbox import Upload, scan, sha256, step_file_for
from automat_pipeline.keys import KEY_PART, partition_key


@dataclass
class Cursor:
    high_water_ns: int = 0
    at_high_water: list[str] = field(default_factory=list)  # paths seen with mtime == high_water_ns
    waiting: list[str] = field(default_factory=list)  # files of tenants that do not exist yet

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        return cls(**json.loads(text)) if text else cls()

    def is_new(self, upload: Upload) -> bool:
        return upload.mtime_ns > self.high_water_ns or (
            upload.mtime_ns == self.high_water_ns and str(upload.path) not in self.at_high_water
        )

    def advance(self, uploads: list[Upload], waiting: list[str]) -> Cursor:
        high = max([self.high_water_ns] + [u.mtime_ns for u in uploads])
        at_high = [str(u.path) for u in uploads if u.mtime_ns == high]
        if high == self.high_water_ns:
            at_high = sorted(set(at_high) | set(self.at_high_water))
        return Cursor(high, at_high, sorted(waiting))

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def media_run(tenant: str, product, digest: str) -> RunRequest:
    key = partition_key(tenant, product.key)
    return RunRequest(run_key=f"{key}@{digest[:16]}", job_name=product_media_job.name, partition_key=key)


@sensor(
    jobs=[import_catalog_job, product_media_job],
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: SensorEvaluationContext, database: Database, media: MediaStore):
    """Watch every tenant inbox for new or changed workbooks and STEP files, and the catalogue for new products."""
    cursor = Cursor.parse(context.cursor)
    file_sha = functools.cache(sha256)  # each file is read once per tick, however many products name it
    uploads = scan(media.uploads_dir)
    waiting_before = set(cursor.waiting)
    candidates = [u for u in uploads if cursor.is_new(u) or str(u.path) in waiting_before]

    runs: dict[str, RunRequest] = {}
    waiting: list[str] = []
    with database.session() as session:
        for slug in sorted({u.tenant for u in candidates}):
            tenant = repository.tenant(session, slug, create=False) if KEY_PART.fullmatch(slug) else None
            mine = [u for u in candidates if u.tenant == slug]
            if tenant is None:
                context.log.warning(f"[upload_sensor] {slug!r} is not a known tenant; {len(mine)} files wait")
                waiting += [str(u.path) for u in mine]
                continue
            refused = {u: error for u in mine if (error := u.refusal())}
            for upload, error in refused.items():  # recorded with the file, which stays
                context.log.warning(f"[upload_sensor] {slug}: {error}")
                kind = upload.kind or "other"
                repository.record_file(session, tenant.id, upload.path, kind, upload.version(), error=str(error))
            mine = [u for u in mine if u not in refused]
            workbooks = sorted(u.path.name for u in mine if u.kind == "catalog")
            if workbooks:
                versions = "".join(f"{n}@{file_sha(media.inbox(slug) / n)}" for n in workbooks)
                combined = hashlib.sha256(versions.encode())
                request = RunRequest(
                    run_key=f"catalog:{slug}@{combined.hexdigest()[:16]}",
                    job_name=import_catalog_job.name,
                    partition_key=slug,
                    run_config={"ops": {"product_catalog": {"config": {"workbooks": workbooks, "trigger": "sensor"}}}},
                )
                runs[request.run_key] = request
            for upload in (u for u in mine if u.kind == "step"):
                for product in repository.products_for_step(session, tenant.id, upload.path.name):
                    request = media_run(slug, product, file_sha(upload.path))
                    runs[request.run_key] = request
        for tenant, products in repository.dispatch_imports(session):
            for product in products:
                path = step_file_for(media.inbox(tenant.slug), product)
                if path:
                    request = media_run(tenant.slug, product, file_sha(path))
                    runs[request.run_key] = request
    if not runs and not candidates:
        return SkipReason("no new uploads or products")
    partitions = {tenant_partitions.name: set(), product_partitions.name: set()}
    for request in runs.values():
        owner = tenant_partitions if request.job_name == import_catalog_job.name else product_partitions
        partitions[owner.name].add(request.partition_key)
    return SensorResult(
        run_requests=list(runs.values()),
        cursor=cursor.advance(uploads, waiting).dump(),
        dynamic_partitions_requests=[
            AddDynamicPartitionsRequest(name, sorted(keys)) for name, keys in partitions.items() if keys
        ],
    )
