"""``product_catalog``: a tenant's Excel product lists, upserted into PostgreSQL."""

import hashlib

from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from automat_pipeline.catalog import read_catalog
from automat_pipeline.db import repository
from automat_pipeline.errors import InputError
from automat_pipeline.inbox import KINDS, sha256
from automat_pipeline.partitions import check_key_part, product_key, product_partitions, tenant_partitions
from automat_pipeline.resources import Database, MediaStore


@asset(partitions_def=tenant_partitions, group_name="catalog", kinds={"excel", "postgres"}, code_version="1")
def product_catalog(context: AssetExecutionContext, database: Database, media: MediaStore) -> MaterializeResult:
    """Every workbook in the tenant's inbox, imported; a bad workbook is recorded and skipped."""
    slug = check_key_part("tenant", context.partition_key)
    workbooks = sorted(p for p in media.inbox(slug).glob("*") if KINDS.get(p.suffix.lower()) == "catalog")
    if not workbooks:
        raise Failure(f"no_workbook: {media.inbox(slug)} holds no .xlsx product list")
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    rejected_rows, rejected_files, shas = [], [], []
    with database.session() as session:
        tenant = repository.tenant(session, slug)
        for workbook in workbooks:
            sha = sha256(workbook)
            shas.append(sha)
            try:
                check = read_catalog(workbook)
            except InputError as error:
                repository.record_file(session, tenant.id, workbook, "catalog", sha, error=str(error))
                rejected_files.append(f"{workbook.name}: {error}")
                context.log.error(f"[product_catalog] {workbook.name} rejected: {error}")
                continue
            for name, n in repository.upsert_products(session, tenant.id, check.accepted).items():
                counts[name] += n
            repository.record_file(session, tenant.id, workbook, "catalog", sha)
            rejected_rows += [f"| {workbook.name} | {r.row} | {r.reason} |" for r in check.rejected]
            context.log.info(
                f"[product_catalog] {workbook.name}: sheet {check.sheet!r}, header row {check.header_row}, "
                f"{len(check.accepted)} rows accepted, {len(check.rejected)} rejected"
            )
        keys = [product_key(slug, p.pim_id) for p in repository.active_products(session, tenant.id)]
    if len(rejected_files) == len(workbooks):
        raise Failure("; ".join(rejected_files), metadata={"rejected_workbooks": rejected_files})
    known = set(context.instance.get_dynamic_partitions(product_partitions.name))
    context.instance.add_dynamic_partitions(product_partitions.name, [k for k in keys if k not in known])
    table = "| workbook | row | reason |\n|---|---|---|\n" + "\n".join(rejected_rows)
    return MaterializeResult(
        metadata={
            **counts,
            "products": len(keys),
            "rejected_rows": len(rejected_rows),
            "rejected_workbooks": MetadataValue.json(rejected_files),
            "rejections": MetadataValue.md(table if rejected_rows else "none"),
        },
        data_version=DataVersion(hashlib.sha256("".join(shas).encode()).hexdigest()),
    )
