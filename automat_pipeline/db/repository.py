"""The domain operations the pipeline needs; every query names its tenant."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import ColumnElement, Integer, Row, String, any_, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from automat_pipeline import output_types, workflows
from automat_pipeline.db.models import (
    CatalogImport,
    InboxFile,
    MaterialAlias,
    MediaAsset,
    MediaRequest,
    OrderHistory,
    OrderLine,
    OrderNumber,
    Product,
    ProductFile,
    RenderHost,
    SavedWorkflow,
    Tenant,
    TenantMaterial,
    TenantOutputType,
)
from automat_pipeline.errors import AutomatError, Conflict, NotFound
from automat_pipeline.inbox import shown_name
from automat_pipeline.keys import check_key_part, split_partition_key
from automat_pipeline.materials import (
    ALIASES,
    FALLBACK,
    LIBRARY,
    AliasIn,
    Material,
    MaterialResolver,
    alias_problems,
    changed_parts,
)
from automat_pipeline.tenant_settings import TenantSettings


def tenant(session: Session, slug: str, create: bool = True) -> Tenant | None:
    found = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if found is None and create:
        session.execute(insert(Tenant).values(slug=slug, name=slug).on_conflict_do_nothing())
        found = session.scalar(select(Tenant).where(Tenant.slug == slug))
    return found


def known_tenant(session: Session, slug: str) -> Tenant:
    """The tenant of a partition key or command; an unknown one is a classified error."""
    found = tenant(session, check_key_part("tenant", slug), create=False)
    if found is None:
        raise AutomatError("unknown_tenant", f"tenant {slug!r} does not exist (automat tenant create)")
    return found


def tenant_and_product(session: Session, partition: str) -> tuple[Tenant, Product]:
    """The tenant and product of a ``tenant|product`` partition key; unknown ones are classified errors."""
    slug, key = split_partition_key(partition)
    found = known_tenant(session, slug)
    item = product(session, found.id, key)
    if item is None:
        raise AutomatError("unknown_product", f"{partition} is not in the catalogue")
    return found, item


def active_products(session: Session, tenant_id: int) -> list[Product]:
    return list(
        session.scalars(select(Product).where(Product.tenant_id == tenant_id, Product.active).order_by(Product.key))
    )


def product(session: Session, tenant_id: int, key: str) -> Product | None:
    return session.scalar(select(Product).where(Product.tenant_id == tenant_id, Product.key == key))


def active_product_keys(session: Session, tenant_id: int) -> list[str]:
    """The keys of the tenant's active products, in key order (no ORM objects: 100k of them cost seconds)."""
    return list(
        session.scalars(select(Product.key).where(Product.tenant_id == tenant_id, Product.active).order_by(Product.key))
    )


def any_of(column, values: list, item_type) -> ColumnElement[bool]:
    """``column = ANY(:values)``: one array parameter, however many values (``IN`` binds one parameter
    per value, and PostgreSQL takes at most 65,535 per statement)."""
    return column == any_(literal(list(values), ARRAY(item_type)))


MEDIA_COLUMNS = (Product.id, Product.key, Product.pim_id, Product.step_filename, Product.materials)


def products_naming(session: Session, tenant_id: int, filenames: list[str]) -> list[Row]:
    """Active products whose catalogue row names one of these STEP files, or whose PIM-ID or key is the
    stem of one (one statement for all of them; rows with ``MEDIA_COLUMNS``)."""
    stems = sorted({Path(name).stem for name in filenames})
    return list(
        session.execute(
            select(*MEDIA_COLUMNS)
            .where(Product.tenant_id == tenant_id, Product.active)
            .where(
                or_(
                    any_of(Product.step_filename, filenames, String),
                    Product.step_filename.is_(None)
                    & or_(any_of(Product.pim_id, stems, String), any_of(Product.key, stems, String)),
                )
            )
            .order_by(Product.key)
        )
    )


def tenants_by_slug(session: Session) -> dict[str, Row]:
    """Every tenant's id, slug, name and state (``active``), by slug, through ``automat_tenants()``:
    the pipeline's role reads no other tenant's row (migration 0022)."""
    return {row.slug: row for row in session.execute(text("SELECT * FROM automat_tenants()"))}


def undispatched_tenants(session: Session) -> list[int]:
    """The active tenants with successful imports whose media runs are not requested yet, through
    ``automat_undispatched_tenants()`` (migration 0022)."""
    return list(session.scalars(text("SELECT automat_undispatched_tenants()")))


def requested_tenants(session: Session, tick: int) -> list[int]:
    """The tenants with media requests that sensor ticks after ``tick`` wrote, through
    ``automat_requested_tenants()`` (migration 0022)."""
    return list(session.scalars(text("SELECT automat_requested_tenants(:tick)"), {"tick": tick}))


def undispatched_imports(session: Session, tenant_id: int) -> list[CatalogImport]:
    """The tenant's successful imports whose media runs are not requested yet, oldest first, locked for
    this tick. A deactivated tenant's imports wait for its reactivation."""
    return list(
        session.scalars(
            select(CatalogImport)
            .where(
                CatalogImport.tenant_id == tenant_id,
                CatalogImport.status == "ok",
                ~CatalogImport.dispatched,
                CatalogImport.tenant_id.in_(select(Tenant.id).where(Tenant.active)),
            )
            .order_by(CatalogImport.id)
            .with_for_update(skip_locked=True)
        )
    )


def import_media_products(session: Session, record: CatalogImport) -> list[Row]:
    """The active products whose media inputs the import changed (created, or STEP file name, material
    assignments or activity changed; ``catalog_import.MEDIA_CHANGED``), with ``MEDIA_COLUMNS``."""
    pim_ids = record.outcomes.get("created", []) + record.outcomes.get("media_changed", [])
    if not pim_ids:
        return []
    return list(
        session.execute(
            select(*MEDIA_COLUMNS)
            .where(Product.tenant_id == record.tenant_id, Product.active, any_of(Product.pim_id, pim_ids, String))
            .order_by(Product.key)
        )
    )


def media_inputs(session: Session, tenant: Tenant) -> str:
    """A digest of the tenant-wide inputs of every product's media besides its STEP file: its material
    library, aliases, fallback material and CAD settings (a product's own assignments come on top)."""
    library = session.execute(
        select(TenantMaterial.name, TenantMaterial.base_color, TenantMaterial.metallic, TenantMaterial.roughness)
        .where(TenantMaterial.tenant_id == tenant.id)
        .order_by(TenantMaterial.name)
    ).all()
    aliases = session.execute(
        select(MaterialAlias.pattern, MaterialAlias.material_name)
        .where(MaterialAlias.tenant_id == tenant.id)
        .order_by(MaterialAlias.position, MaterialAlias.id)
    ).all()
    inputs = [
        [list(r) for r in library],
        [list(r) for r in aliases],
        fallback_material(tenant),
        tenant.settings.get("cad"),
    ]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def inbox_state(session: Session, tenant_id: int) -> dict[str, InboxFile]:
    """What the upload sensor last saw of the files in the tenant's inbox, by file name."""
    return {f.filename: f for f in session.scalars(select(InboxFile).where(InboxFile.tenant_id == tenant_id))}


def record_inbox(session: Session, tenant_id: int, rows: list[dict]) -> None:
    """Upsert the tenant's inbox file states (``InboxFile`` columns) in one statement: arrays, whatever
    their number."""
    if not rows:
        return
    columns = ["filename", "size_bytes", "mtime_ns", "ctime_ns", "inode", "sha256", "changed_tick"]
    types = ["text", "bigint", "bigint", "bigint", "bigint", "text", "bigint"]
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
    session.execute(
        text(f"""
        INSERT INTO inbox_files (tenant_id, {", ".join(columns)})
        SELECT :tenant_id, * FROM unnest({arrays})
        ON CONFLICT (tenant_id, filename) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])}
    """),
        {"tenant_id": tenant_id} | {c: [row[c] for row in rows] for c in columns},
    )


def forget_inbox(session: Session, tenant_id: int, filenames: list[str]) -> None:
    """Forget what the upload sensor saw of these files: the next tick sees them as new."""
    session.execute(
        delete(InboxFile).where(InboxFile.tenant_id == tenant_id, any_of(InboxFile.filename, filenames, String))
    )


def next_sensor_tick(session: Session) -> int:
    """A new upload sensor tick number (a sequence: unique, growing, whatever the sensor's cursor says)."""
    return session.scalar(text("SELECT nextval('upload_sensor_ticks')"))


def media_requested(session: Session, tenant_id: int, product_ids: list[int]) -> dict[int, MediaRequest]:
    """The media chain last requested for each of these products of the tenant (those that have one)."""
    found = session.scalars(
        select(MediaRequest).where(
            MediaRequest.tenant_id == tenant_id, any_of(MediaRequest.product_id, product_ids, Integer)
        )
    )
    return {r.product_id: r for r in found}


def media_requested_after(session: Session, tenant_id: int, tick: int) -> list[Row]:
    """The tenant's products whose media requests ticks after ``tick`` wrote (``MEDIA_COLUMNS``)."""
    return list(
        session.execute(
            select(*MEDIA_COLUMNS)
            .join(MediaRequest, MediaRequest.product_id == Product.id)
            .where(MediaRequest.tenant_id == tenant_id, MediaRequest.tick > tick, Product.active)
            .order_by(Product.key)
        )
    )


def record_media_requests(session: Session, tenant_id: int, keys: dict[int, str], tick: int) -> None:
    """Remember the media chain requested for each of the tenant's product ids (its inputs' key), in one
    statement."""
    if keys:
        session.execute(
            text("""
            INSERT INTO media_requests (tenant_id, product_id, media_key, tick)
            SELECT :tenant_id, product_id, media_key, :tick
                FROM unnest(CAST(:ids AS integer[]), CAST(:keys AS text[])) AS r (product_id, media_key)
            ON CONFLICT (product_id) DO UPDATE SET media_key = EXCLUDED.media_key, tick = EXCLUDED.tick
        """),
            {"tenant_id": tenant_id, "ids": list(keys), "keys": list(keys.values()), "tick": tick},
        )


def has_cad(session: Session, tenant_id: int, product_ids: list[int]) -> set[int]:
    """Those of the tenant's ``product_ids`` whose CAD conversion succeeded."""
    return set(
        session.scalars(
            select(ProductFile.product_id).where(
                ProductFile.tenant_id == tenant_id,
                any_of(ProductFile.product_id, product_ids, Integer),
                ProductFile.kind == "step",
                ProductFile.status == "ok",
            )
        )
    )


def product_search(words: str):
    """Ids of the session tenant's products whose name or PIM-ID contains ``words`` (migration 0007's
    ``product_search``: the trigram indexes, which row-level security would keep unused)."""
    pattern = "%" + words.replace("\\", "").replace("%", "").replace("_", "") + "%"
    return select(func.product_search(pattern))


def saved_workflow(session: Session, tenant_id: int, name: str) -> workflows.Saved:
    """A tenant's workflow by name (``default``: the built-in full pipeline)."""
    if name == workflows.DEFAULT:
        return workflows.Saved(workflows.DEFAULT, 0, workflows.default_workflow())
    found = session.scalar(
        select(SavedWorkflow).where(SavedWorkflow.tenant_id == tenant_id, SavedWorkflow.name == name)
    )
    if found is None:
        raise NotFound(f"no workflow {name!r}")
    return workflows.Saved(found.name, found.revision, found.document)


def record_file(
    session: Session,
    tenant_id: int,
    path: Path,
    kind: str,
    sha256: str,
    error: str | None = None,
    product_id: int | None = None,
) -> None:
    """Record what became of one version of an upload (the latest outcome wins)."""
    values = dict(
        tenant_id=tenant_id,
        product_id=product_id,
        filename=shown_name(path),
        kind=kind,
        sha256=sha256,
        size_bytes=Path(path).lstat().st_size,  # a symbolic link is refused, never followed
        status="rejected" if error else "ok",
        error=error,
    )
    statement = insert(ProductFile).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "filename", "sha256"],
            set_={k: statement.excluded[k] for k in ("product_id", "status", "error")} | {"recorded_at": func.now()},
        )
    )


def material_library(session: Session, tenant: Tenant) -> dict[str, Material]:
    """The shipped library with the tenant's own materials added or overriding by name."""
    library = {m.name: m for m in LIBRARY}
    for m in session.scalars(select(TenantMaterial).where(TenantMaterial.tenant_id == tenant.id)):
        library[m.name] = Material(m.name, tuple(m.base_color), m.metallic, m.roughness, m.description)
    return library


def fallback_material(tenant: Tenant) -> str:
    return tenant.settings.get("fallback_material", FALLBACK)


def tenant_aliases(session: Session, tenant_id: int) -> list[tuple[str, str]]:
    """The tenant's own aliases, in the order they are tried: ``(pattern, material)``."""
    rows = session.execute(
        select(MaterialAlias.pattern, MaterialAlias.material_name)
        .where(MaterialAlias.tenant_id == tenant_id)
        .order_by(MaterialAlias.position, MaterialAlias.id)
    )
    return [tuple(row) for row in rows]


def material_resolver(session: Session, tenant: Tenant, product: Product) -> MaterialResolver:
    """The tenant's library, its aliases before the default ones, the product's catalogue
    assignments, and its fallback material."""
    library = material_library(session, tenant)
    aliases = tenant_aliases(session, tenant.id)
    return MaterialResolver(library, aliases + ALIASES, dict(product.materials or {}), fallback_material(tenant))


MAX_OWN_MATERIALS = 1000  # a tenant's own materials; the shipped library comes on top


def own_materials(session: Session, tenant: Tenant) -> set[str]:
    return set(session.scalars(select(TenantMaterial.name).where(TenantMaterial.tenant_id == tenant.id)))


def put_material(session: Session, tenant: Tenant, material: Material, apply: bool = True) -> list[dict]:
    """Add or replace the tenant's own ``material`` (a shipped name: the tenant's overrides it); the
    products it changes (``resolution_changes``), whether applied or not."""
    own = own_materials(session, tenant)
    if len(own) >= MAX_OWN_MATERIALS and material.name not in own:
        raise AutomatError("too_many", f"a tenant has at most {MAX_OWN_MATERIALS} materials of its own")
    library = material_library(session, tenant) | {material.name: material}
    changes = resolution_changes(session, tenant, library, tenant_aliases(session, tenant.id))
    if apply:
        values = {
            "base_color": list(material.base_color),
            "metallic": material.metallic,
            "roughness": material.roughness,
            "description": material.description,
        }
        upsert = insert(TenantMaterial).values(tenant_id=tenant.id, name=material.name, **values)
        session.execute(upsert.on_conflict_do_update(index_elements=["tenant_id", "name"], set_=values))
    return changes


def remove_material(session: Session, tenant: Tenant, name: str, apply: bool = True) -> list[dict]:
    """Delete the tenant's own material ``name`` (an override: the shipped one comes back). Refused
    for a shipped material, the tenant's fallback, and one its aliases name: what depends on a
    material goes first."""
    if name not in own_materials(session, tenant):
        shipped = any(m.name == name for m in LIBRARY)
        raise Conflict(f"{name!r} is shipped: override it instead") if shipped else NotFound(f"no material {name!r}")
    library, shipped = material_library(session, tenant), {m.name: m for m in LIBRARY}
    if name in shipped:
        library[name] = shipped[name]
    else:
        del library[name]
        if name == fallback_material(tenant):
            raise Conflict(f"{name!r} is the tenant's fallback_material: choose another one in the settings first")
        naming = [pattern for pattern, material in tenant_aliases(session, tenant.id) if material == name]
        if naming:
            raise Conflict(f"{name!r} is named by the aliases {', '.join(map(repr, naming))}: change them first")
    changes = resolution_changes(session, tenant, library, tenant_aliases(session, tenant.id))
    if apply:
        session.execute(
            delete(TenantMaterial).where(TenantMaterial.tenant_id == tenant.id, TenantMaterial.name == name)
        )
    return changes


def put_aliases(session: Session, tenant: Tenant, aliases: list[AliasIn], apply: bool = True) -> list[dict]:
    """Replace the tenant's aliases, tried in this order before the shipped ones; refused with every
    problem ``alias_problems`` finds."""
    library = material_library(session, tenant)
    problems = alias_problems(aliases, set(library))
    if problems:
        raise AutomatError("invalid_aliases", "; ".join(problems))
    pairs = [(a.pattern, a.material) for a in aliases]
    changes = resolution_changes(session, tenant, library, pairs)
    if apply:
        session.execute(delete(MaterialAlias).where(MaterialAlias.tenant_id == tenant.id))
        session.add_all(
            MaterialAlias(tenant_id=tenant.id, pattern=pattern, material_name=material, position=position)
            for position, (pattern, material) in enumerate(pairs)
        )
        session.flush()
    return changes


def resolution_changes(
    session: Session, tenant: Tenant, library: dict[str, Material], aliases: list[tuple[str, str]]
) -> list[dict]:
    """The tenant's converted products whose parts would look different with ``library`` and
    ``aliases`` (the tenant's own) than now: each with its changed parts, before and after. Read
    from the part names each conversion recorded with its production GLB."""
    now_library, now_aliases = material_library(session, tenant), tenant_aliases(session, tenant.id)
    fallback = fallback_material(tenant)
    changes = []
    rows = session.execute(
        select(Product.id, Product.pim_id, Product.materials, MediaAsset.details["parts"])
        .join(MediaAsset, MediaAsset.product_id == Product.id)
        .where(
            Product.tenant_id == tenant.id,
            Product.active,
            MediaAsset.tenant_id == tenant.id,
            MediaAsset.asset == "glb_production",
            MediaAsset.status == "completed",
        )
        .order_by(Product.pim_id)
    )
    for product_id, pim_id, assigned, parts in rows:
        before = MaterialResolver(now_library, now_aliases + ALIASES, dict(assigned or {}), fallback)
        after = MaterialResolver(library, aliases + ALIASES, dict(assigned or {}), fallback)
        changed = changed_parts(parts or [], before, after)
        if changed:
            parts_changed = {part: {"before": b, "after": a} for part, (b, a) in changed.items()}
            changes.append({"product_id": product_id, "pim_id": pim_id, "parts": parts_changed})
    return changes


def made_for(session: Session, tenant_id: int, product_ids: list[int]) -> dict[str, set[str]]:
    """What was made for these products: step → the output types it completed."""
    rows = session.execute(
        select(MediaAsset.asset, MediaAsset.output_type)
        .where(
            MediaAsset.tenant_id == tenant_id,
            MediaAsset.product_id.in_(product_ids),
            MediaAsset.status == "completed",
        )
        .distinct()
    )
    made: dict[str, set[str]] = {}
    for step, output_type in rows:
        made.setdefault(step, set()).add(output_type)
    return made


def output_types_of(session: Session, tenant_id: int) -> list[output_types.OutputType]:
    """The tenant's output types: shipped defaults, its own added or overriding by name."""
    own = [
        output_types.parse(t.name, t.settings)
        for t in session.scalars(
            select(TenantOutputType).where(TenantOutputType.tenant_id == tenant_id).order_by(TenantOutputType.name)
        )
    ]
    return output_types.merged(own)


def tenant_output_types(session: Session, tenant: Tenant, kind: str) -> list[output_types.OutputType]:
    """The tenant's output types of ``kind``, as rendered: one that names no ``cycles_device`` takes
    the tenant's setting."""
    device = TenantSettings.of(tenant.settings).cycles_device
    return [
        t if t.cycles_device else t.model_copy(update={"cycles_device": device})
        for t in output_types_of(session, tenant.id)
        if t.kind == kind
    ]


def media_failure(session: Session, tenant_id: int, product_id: int) -> str | None:
    """Why the product's media chain last failed, as recorded: its upload's rejection (the newest), else
    its thumbnail's failure; None when neither failed."""
    rejected = session.scalar(
        select(ProductFile.error)
        .where(ProductFile.tenant_id == tenant_id, ProductFile.product_id == product_id, ProductFile.kind == "step")
        .order_by(ProductFile.recorded_at.desc())
        .limit(1)
    )
    if rejected:
        return rejected
    render = session.execute(
        select(MediaAsset.error_class, MediaAsset.reason).where(
            MediaAsset.tenant_id == tenant_id,
            MediaAsset.product_id == product_id,
            MediaAsset.asset == "thumbnail",
            MediaAsset.status == "failed",
        )
    ).first()
    return f"{render.error_class}: {render.reason}" if render else None


def record_media(
    session: Session, tenant_id: int, product_id: int, asset: str, output_type: str, status: str, **values
) -> None:
    """Record the latest outcome of one media file of a product: a render, or a GLB (``values``:
    path, error_class, reason, run_id, details)."""
    statement = insert(MediaAsset).values(
        tenant_id=tenant_id, product_id=product_id, asset=asset, output_type=output_type, status=status, **values
    )
    changed = {"status", "path", "error_class", "reason", "run_id", "details"}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "product_id", "asset", "output_type"],
            set_={k: statement.excluded[k] for k in changed} | {"updated_at": func.now()},
        )
    )
    seconds = (values.get("details") or {}).get("render_seconds")
    if status == "completed" and seconds is not None:
        observe(session, "render", asset, session.get(Tenant, tenant_id).slug, seconds)


# Upper bounds (seconds) of the duration histograms /metrics serves; the last bucket is +Inf.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def observe(session: Session, metric: str, step: str, tenant: str, seconds: float) -> None:
    """Count one duration into its histogram (migration 0014), in place: one row, one statement."""
    bucket = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
    first = [int(i == bucket) for i in range(len(BUCKETS) + 1)]
    session.execute(
        text("""
        INSERT INTO observations AS o (metric, step, tenant, count, sum, buckets)
        VALUES (:metric, :step, :tenant, 1, :seconds, CAST(:first AS bigint[]))
        ON CONFLICT (metric, step, tenant) DO UPDATE SET
            count = o.count + 1, sum = o.sum + EXCLUDED.sum, buckets[:bucket] = o.buckets[:bucket] + 1
    """),
        {"metric": metric, "step": step, "tenant": tenant, "seconds": seconds, "first": first, "bucket": bucket + 1},
    )


def observations(session: Session) -> list[Row]:
    """Every duration histogram: metric, step, tenant, count, sum, per-bucket counts."""
    return list(
        session.execute(
            text("SELECT metric, step, tenant, count, sum, buckets FROM observations ORDER BY metric, step, tenant")
        )
    )


def record_started(
    session: Session, tenant_id: int, product_id: int, asset: str, output_type: str, run_id: str
) -> None:
    """A render or conversion the run starts now: ``running`` until its outcome is recorded (the
    file of an earlier run, if any, stays where it is until the new one replaces it)."""
    statement = insert(MediaAsset).values(
        tenant_id=tenant_id,
        product_id=product_id,
        asset=asset,
        output_type=output_type,
        status="running",
        run_id=run_id,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "product_id", "asset", "output_type"],
            set_={"status": "running", "run_id": run_id, "error_class": None, "reason": None, "updated_at": func.now()},
        )
    )


def settle_media(session: Session, run_id: str, status: str, error_class: str, reason: str) -> int:
    """What the run left ``running`` (its worker died before it could say) or ``cancelled`` (run
    monitoring stopped it: no one cancelled it) gets the run's outcome; how many records."""
    settled = session.execute(
        update(MediaAsset)
        .where(MediaAsset.run_id == run_id, MediaAsset.status.in_(("running", "cancelled")))
        .values(status=status, error_class=error_class, reason=reason, updated_at=func.now())
    )
    return settled.rowcount


def next_order_number(session: Session, tenant_id: int, year: int) -> str:
    """The tenant's next order number of ``year``: ``ORD-2026-000042``. The counter row is locked by
    the upsert until the transaction ends, so concurrent orders never draw the same number."""
    drawn = session.scalar(
        insert(OrderNumber)
        .values(tenant_id=tenant_id, year=year, last=1)
        .on_conflict_do_update(index_elements=["tenant_id", "year"], set_={"last": OrderNumber.last + 1})
        .returning(OrderNumber.last)
    )
    return f"ORD-{year}-{drawn:06d}"


def record_line_outcome(session: Session, line_id: int, run_id: str, **values) -> bool:
    """What a line's run came to (state, error_class, reason, outputs, times), if the line still
    belongs to that run (a resubmitted order's line has a new one); a finished line stays finished."""
    updated = session.execute(
        update(OrderLine)
        .where(
            OrderLine.id == line_id,
            OrderLine.run_id == run_id,
            OrderLine.state.not_in(("completed", "failed", "cancelled")),
        )
        .values(**values, updated_at=func.now())
    )
    return bool(updated.rowcount)


def adopt_retry(session: Session, parent_run_id: str, run_id: str, error_class: str, reason: str) -> int:
    """A run Dagster retried (its worker was lost) hands its lines over to the retry; each order's
    history keeps what happened. How many lines (none if they are another run's now, or cancelled)."""
    adopted = session.execute(
        update(OrderLine)
        .where(OrderLine.run_id == parent_run_id, OrderLine.state != "cancelled")
        .values(
            run_id=run_id,
            state="queued",
            error_class=None,
            reason=None,
            progress=None,
            outputs=[],
            ended_at=None,
            seconds=None,
            updated_at=func.now(),
        )
        .returning(OrderLine.id, OrderLine.tenant_id, OrderLine.order_id)
    ).all()
    by_order: dict[tuple[int, int], list[dict]] = {}
    for line in adopted:
        retried = {"line": line.id, "run_id": parent_run_id, "retry_run_id": run_id, "error_class": error_class}
        by_order.setdefault((line.tenant_id, line.order_id), []).append(retried)
    for (tenant_id, order_id), lines in by_order.items():
        session.add(
            OrderHistory(
                tenant_id=tenant_id,
                order_id=order_id,
                event="line_retried",
                reason=f"{error_class}: {reason}"[:2000],
                lines=lines,
            )
        )
    return len(adopted)


def claim_batch_lines(session: Session, batch_id: str, run_id: str, partitions: list[str]) -> int:
    """The lines of backfill ``batch_id`` whose products the run renders (``partitions``) get its run
    id, unless they finished (cancelled) or have a run already. How many."""
    products = [split_partition_key(p)[1] for p in partitions]
    claimed = session.execute(
        update(OrderLine)
        .where(
            OrderLine.batch_id == batch_id,
            OrderLine.run_id.is_(None),
            OrderLine.state.not_in(("completed", "failed", "cancelled")),
            OrderLine.product_id == Product.id,
            Product.key == any_(literal(products, ARRAY(String))),
        )
        .values(run_id=run_id, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount


def lines_of_runs(session: Session, run_ids: list[str]) -> list[Row]:
    """``(id, run_id, product_id, output_type)`` of every line the runs render."""
    return session.execute(
        select(OrderLine.id, OrderLine.run_id, OrderLine.product_id, OrderLine.output_type)
        .where(OrderLine.run_id == any_(literal(run_ids, ARRAY(String))))
        .order_by(OrderLine.id)
    ).all()


def media_outcomes(session: Session, run_ids: list[str]) -> dict[tuple[str, int, str], Row]:
    """What the runs' steps recorded per product and output type: ``status, error_class, reason``,
    by ``(run id, product id, output type)``: a batch run's line succeeds or fails with its product."""
    rows = session.execute(
        select(
            MediaAsset.run_id,
            MediaAsset.product_id,
            MediaAsset.output_type,
            MediaAsset.status,
            MediaAsset.error_class,
            MediaAsset.reason,
        ).where(MediaAsset.run_id == any_(literal(run_ids, ARRAY(String))))
    ).all()
    return {(r.run_id, r.product_id, r.output_type): r for r in rows}


def waiting_batches(session: Session) -> list[tuple[str, int]]:
    """The backfills that have lines waiting for their run, with their tenant: across tenants,
    through the database's one function that may see them (migration 0021)."""
    return [tuple(row) for row in session.execute(text("SELECT batch_id, tenant_id FROM automat_waiting_batches()"))]


def end_waiting(session: Session, batch_id: str, state: str, error_class: str, reason: str) -> list[int]:
    """The lines of ``batch_id`` that no run took end in ``state`` with the reason; their ids."""
    return list(
        session.scalars(
            update(OrderLine)
            .where(OrderLine.batch_id == batch_id, OrderLine.run_id.is_(None), OrderLine.state == "queued")
            .values(state=state, error_class=error_class, reason=reason[:2000], updated_at=func.now())
            .returning(OrderLine.id)
        )
    )


def record_progress(session: Session, line_id: int, run_id: str, percent: int) -> None:
    """How far a line's render is (percent), while its run runs."""
    session.execute(
        update(OrderLine)
        .where(OrderLine.id == line_id, OrderLine.run_id == run_id, OrderLine.state.in_(("queued", "running")))
        .values(state="running", progress=min(max(percent, 0), 100), updated_at=func.now())
    )


def runs_outputs(session: Session, run_ids: list[str]) -> dict[str, list[dict]]:
    """What each run made: its media rows, as an order line lists them (with the product: a batch
    run makes many products')."""
    made: dict[str, list[dict]] = {run_id: [] for run_id in run_ids}
    for m in session.scalars(select(MediaAsset).where(MediaAsset.run_id.in_(run_ids)).order_by(MediaAsset.id)):
        details = {k: v for k, v in m.details.items() if k not in ("output", "path")}
        made[m.run_id].append(
            {
                "media_id": m.id,
                "product_id": m.product_id,
                "asset": m.asset,
                "output_type": m.output_type,
                "details": details,
            }
        )
    return made


def max_run_retries(session: Session, slug: str) -> int | None:
    """The tenant's ``max_run_retries``; None for a tenant that is not there or whose settings do not validate."""
    found = tenant(session, slug, create=False)
    try:
        return TenantSettings.of(found.settings).max_run_retries if found else None
    except AutomatError:
        return None


def render_limits(session: Session, default: int) -> dict[str, int]:
    """Each tenant's ``max_concurrent_renders``, through ``automat_render_limits()`` (migration 0022: the
    run queue reads no tenant's rows); a missing or invalid setting means ``default``."""
    limits = {}
    for slug, value in session.execute(text("SELECT slug, max_concurrent_renders FROM automat_render_limits()")):
        limits[slug] = value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64 else default
    return limits


def record_host_probe(session: Session, host: str, probe: dict, warmed: bool | None = None) -> None:
    """A GPU probe on ``host`` (``probe``: device, backend, driver, fallback_reason, as Blender reports
    them); ``warmed``: the warm-up's verdict on the kernel cache (None: a render's probe, which
    warms it only when it ran on the GPU)."""
    on_gpu = probe.get("device") not in (None, "CPU")
    values = {
        "device": probe.get("device"),
        "backend": probe.get("backend"),
        "driver": probe.get("driver"),
        "probed_at": func.now(),
        "probe": {k: probe.get(k) for k in ("device", "backend", "driver", "fallback_reason", "render_seconds")},
    }
    if warmed is not None or on_gpu:
        values |= {"cache_warm": bool(warmed if warmed is not None else on_gpu)}
    if warmed or (warmed is None and on_gpu):
        values["warmed_at"] = func.now()
    statement = insert(RenderHost).values(name=host, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def record_host_render(session: Session, host: str, result: dict) -> None:
    """One render ``host`` served, counted as on the GPU or on the CPU by the device Blender reports; a
    Cycles render that asked for the GPU probed for it, which is the host's latest probe too."""
    if result.get("cycles_device") == "gpu":
        record_host_probe(session, host, result)
    column = RenderHost.cpu_renders if result.get("device") == "CPU" else RenderHost.gpu_renders
    statement = insert(RenderHost).values(name=host, **{column.key: 1}, last_render_at=func.now())
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={column.key: column + 1, "last_render_at": func.now()}
        )
    )


def render_hosts(session: Session) -> list[RenderHost]:
    """Every render host's status, through ``automat_render_hosts()``: the API's role cannot read the
    table itself (migration 0015), and the route admits global admins only."""
    return list(session.scalars(select(RenderHost).from_statement(text("SELECT * FROM automat_render_hosts()"))))
