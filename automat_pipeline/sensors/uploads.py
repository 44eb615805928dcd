"""``upload_sensor``: turns new file versions in ``uploads/<tenant>/`` into runs, each exactly once.

A workbook requests the tenant's catalogue import. A STEP file requests the media chain of every
product that names it; a STEP file that no product names yet waits in the cursor until the
catalogue does. The cursor holds a modification-time high-water mark plus the waiting files, so it
stays as small as the inbox's unmatched files, and run keys carry the content hash: the same
bytes never run twice, changed bytes always run.
"""

from __future__ import annotations

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
from automat_pipeline.inbox import Upload, scan, sha256
from automat_pipeline.jobs import import_catalog_job, product_media_job
from automat_pipeline.partitions import (
    KEY_PART,
    TENANT_TAG,
    product_key,
    product_partitions,
    tenant_partitions,
)
from automat_pipeline.resources import Database, MediaStore


@dataclass
class Cursor:
    high_water_ns: int = 0
    at_high_water: list[str] = field(default_factory=list)  # paths seen with mtime == high_water_ns
    waiting: list[str] = field(default_factory=list)  # STEP files no product names yet

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


@sensor(jobs=[import_catalog_job, product_media_job], minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING)
def upload_sensor(context: SensorEvaluationContext, database: Database, media: MediaStore):
    """Watch every tenant inbox for new or changed workbooks and STEP files."""
    cursor = Cursor.parse(context.cursor)
    uploads = scan(media.uploads_dir)
    waiting_before = set(cursor.waiting)
    candidates = [u for u in uploads if cursor.is_new(u) or str(u.path) in waiting_before]
    if not candidates:
        return SkipReason("no new uploads")

    runs: list[RunRequest] = []
    waiting: list[str] = []
    tenants, products = set(), set()
    with database.session() as session:
        for slug in sorted({u.tenant for u in candidates}):
            tenant = repository.tenant(session, slug, create=False) if KEY_PART.fullmatch(slug) else None
            mine = [u for u in candidates if u.tenant == slug]
            if tenant is None:
                context.log.warning(f"[upload_sensor] {slug!r} is not a known tenant; {len(mine)} files wait")
                waiting += [str(u.path) for u in mine]
                continue
            tenants.add(slug)
            workbooks = [(u, sha256(u.path)) for u in mine if u.kind == "catalog"]
            if workbooks:
                digest = hashlib.sha256("".join(f"{u.path.name}@{s}" for u, s in workbooks).encode())
                runs.append(RunRequest(
                    run_key=f"catalog:{slug}@{digest.hexdigest()[:16]}",
                    job_name=import_catalog_job.name,
                    partition_key=slug,
                    tags={TENANT_TAG: slug},
                ))
            for upload in (u for u in mine if u.kind == "step"):
                matches = repository.products_for_step(session, tenant.id, upload.path.name)
                if not matches:
                    waiting.append(str(upload.path))
                    continue
                digest = sha256(upload.path)[:16]
                for product in matches:
                    key = product_key(slug, product.pim_id)
                    products.add(key)
                    runs.append(RunRequest(
                        run_key=f"{key}@{digest}",
                        job_name=product_media_job.name,
                        partition_key=key,
                        tags={TENANT_TAG: slug},
                    ))
    return SensorResult(
        run_requests=runs,
        cursor=cursor.advance(uploads, waiting).dump(),
        dynamic_partitions_requests=[
            AddDynamicPartitionsRequest(partitions.name, sorted(keys))
            for partitions, keys in ((tenant_partitions, tenants), (product_partitions, products))
            if keys
        ],
    )
