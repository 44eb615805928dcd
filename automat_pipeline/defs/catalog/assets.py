"""``product_catalog``: a tenant's Excel product lists imported into PostgreSQL; ``catalog_report``: what
became of each row."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from automat_pipeline.catalog_import import (
    ImportResult,
    attach_report,
    import_workbook,
    imports_without_report,
)
from automat_pipeline.db import repository
from automat_pipeline.defs.failures import classified
from automat_pipeline.defs.partitions import register_products, tenant_partitions
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.errors import AutomatError
from automat_pipeline.inbox import KINDS, sha256
from automat_pipeline.keys import check_key_part
from automat_pipeline.step_params import CatalogImportParams

MAX_REJECTIONS_SHOWN = 200


class CatalogImportConfig(Config, CatalogImportParams):
    """The step's parameters (``step_params.CatalogImportParams``) as Dagster run config."""


@asset(
    partitions_def=tenant_partitions,
    group_name="catalog",
    kinds={"excel", "postgres"},
    code_version="2",
    check_specs=[
        AssetCheckSpec(
            "workbooks_readable", asset="product_catalog", description="Every workbook of the import could be read."
        )
    ],
)
def product_catalog(context: AssetExecutionContext, config: CatalogImportConfig, database: Database, media: MediaStore):
    """Each workbook is one recorded import in its own transaction; a bad one is reported and skipped.
    A database that goes away mid-import (a restart) rolls the import back; it runs again once the
    database answers (``Database.retrying``)."""
    with classified(context, "product_catalog"):
        slug = check_key_part("tenant", context.partition_key)
        inbox = media.inbox(slug)
        names = config.workbooks or sorted(p.name for p in inbox.glob("*") if KINDS.get(p.suffix.lower()) == "catalog")
        if not names:
            raise AutomatError("no_workbook", f"{inbox} holds no .xlsx product list")
        results: list[ImportResult] = []
        trigger = f"{config.trigger}:{context.run.run_id}"
        for name in names:  # a database that goes away mid-import rolls it back; it runs again once it is back
            result = database.retrying(
                lambda session, name=name: import_workbook(
                    session, repository.known_tenant(session, slug), inbox / name, trigger
                ),
                tenant=slug,
            )
            results.append(result)
            if result.error:
                context.log.error(f"[product_catalog] {name} rejected: {result.error}")
            else:
                context.log.info(f"[product_catalog] {name}: {result.counts} in {result.seconds} s")
        failed = [r for r in results if r.error]
        if len(failed) == len(results):
            raise (
                failed[0].error
                if len(failed) == 1
                else AutomatError("import_failed", "; ".join(str(r.error) for r in failed))
            )

    products = database.retrying(
        lambda session: register_products(context.instance, session, repository.tenant(session, slug, create=False)),
        tenant=slug,
    )

    totals = {
        k: sum(r.counts.get(k, 0) for r in results)
        for k in ("rows", "accepted", "rejected", "created", "updated", "unchanged", "deactivated")
    }
    rejections = [(r.filename, x) for r in results for x in r.rejected][:MAX_REJECTIONS_SHOWN]
    table = "| workbook | sheet | row | reason |\n|---|---|---|---|\n" + "\n".join(
        f"| {name} | {x.sheet} | {x.row} | {x.reason} |" for name, x in rejections
    )
    yield MaterializeResult(
        metadata={
            **totals,
            "products": products,
            "import_ids": MetadataValue.json([r.import_id for r in results]),
            "rejections": MetadataValue.md(table if rejections else "none"),
        }
    )
    yield AssetCheckResult(
        check_name="workbooks_readable",
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        metadata={"failed": MetadataValue.json({r.filename: str(r.error) for r in failed})},
    )


@asset(
    partitions_def=tenant_partitions, deps=[product_catalog], group_name="catalog", kinds={"excel"}, code_version="1"
)
def catalog_report(context: AssetExecutionContext, database: Database, media: MediaStore) -> MaterializeResult:
    """Each workbook's rows with a status and a reason column, as .xlsx for the product manager.

    A step of its own: writing 100k rows with openpyxl takes ~20 s, which the import need not wait for.
    """
    slug = context.partition_key
    reports = {}
    with classified(context, "catalog_report"), database.session(slug) as session:
        tenant = repository.known_tenant(session, slug)
        for record in imports_without_report(session, tenant.id):
            workbook = media.inbox(slug) / record.filename
            if not workbook.is_file() or sha256(workbook) != record.sha256:
                context.log.warning(
                    f"[catalog_report] {record.filename} changed since import {record.id}; "
                    "its next import gets the report"
                )
                continue
            reports[record.filename] = str(attach_report(session, record, workbook, media.reports_dir(slug)))
            context.log.info(f"[catalog_report] {record.filename}: {reports[record.filename]}")
    return MaterializeResult(metadata={"reports": MetadataValue.json(reports), "written": len(reports)})
