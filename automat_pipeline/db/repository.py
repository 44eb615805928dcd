"""The domain operations the pipeline needs; every query names its tenant."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline import output_types, workflows
from automat_pipeline.db.models import (
    CatalogImport,
    MaterialAlias,
    MediaAsset,
    Product,
    ProductFile,
    RenderHost,
    SavedWorkflow,
    Tenant,
    TenantMaterial,
    TenantOutputType,
)
from automat_pipeline.errors import AutomatError, NotFound
from automat_pipeline.keys import check_key_part, split_partition_key
from automat_pipeline.materials import ALIASES, FALLBACK, LIBRARY, Material, MaterialResolver
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


def products_for_step(session: Session, tenant_id: int, filename: str) -> list[Product]:
    """Active products whose catalogue row names this STEP file, or whose PIM-ID or key is its stem."""
    stem = Path(filename).stem
    return list(
        session.scalars(
            select(Product)
            .where(Product.tenant_id == tenant_id, Product.active)
            .where(
                or_(
                    Product.step_filename == filename,
                    Product.step_filename.is_(None) & or_(Product.pim_id == stem, Product.key == stem),
                )
            )
            .order_by(Product.key)
        )
    )


def dispatch_imports(session: Session) -> list[tuple[Tenant, list[Product]]]:
    """Products that new imports created or changed, per import; marks those imports dispatched."""
    imports = session.scalars(
        select(CatalogImport)
        .where(CatalogImport.status == "ok", ~CatalogImport.dispatched)
        .order_by(CatalogImport.id)
        .with_for_update(skip_locked=True)
    ).all()
    found = []
    for record in imports:
        record.dispatched = True
        pim_ids = record.outcomes.get("created", []) + record.outcomes.get("updated", [])
        if pim_ids:
            found.append(
                (
                    session.get(Tenant, record.tenant_id),
                    list(
                        session.scalars(
                            select(Product)
                            .where(Product.tenant_id == record.tenant_id, Product.active, Product.pim_id.in_(pim_ids))
                            .order_by(Product.key)
                        )
                    ),
                )
            )
    return found


def has_cad(session: Session, tenant_id: int, product_ids: list[int]) -> set[int]:
    """Those of the tenant's ``product_ids`` whose CAD conversion succeeded."""
    return set(
        session.scalars(
            select(ProductFile.product_id).where(
                ProductFile.tenant_id == tenant_id,
                ProductFile.product_id.in_(product_ids),
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
        filename=Path(path).name,
        kind=kind,
        sha256=sha256,
        size_bytes=Path(path).stat().st_size,
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


def material_resolver(session: Session, tenant: Tenant, product: Product) -> MaterialResolver:
    """The tenant's library, its aliases before the default ones, the product's catalogue
    assignments, and its fallback material."""
    library = material_library(session, tenant)
    aliases = [
        (a.pattern, a.material_name)
        for a in session.scalars(
            select(MaterialAlias)
            .where(MaterialAlias.tenant_id == tenant.id)
            .order_by(MaterialAlias.position, MaterialAlias.id)
        )
    ]
    return MaterialResolver(library, aliases + ALIASES, dict(product.materials or {}), fallback_material(tenant))


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


def record_render(
    session: Session, tenant_id: int, product_id: int, asset: str, output_type: str, status: str, **values
) -> None:
    """Record the latest outcome of one render (``values``: path, error_class, reason, run_id, details)."""
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


def render_limits(session: Session, default: int) -> dict[str, int]:
    """Each tenant's ``max_concurrent_renders``; a missing or invalid setting means ``default``."""
    limits = {}
    for slug, value in session.execute(select(Tenant.slug, Tenant.settings["max_concurrent_renders"])):
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
    return list(session.scalars(select(RenderHost).order_by(RenderHost.name)))
