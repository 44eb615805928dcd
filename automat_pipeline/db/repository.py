"""The domain operations the pipeline needs; every query names its tenant."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline.catalog import CatalogRow
from automat_pipeline.db.models import Product, ProductFile, Tenant


def tenant(session: Session, slug: str, create: bool = True) -> Tenant | None:
    found = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if found is None and create:
        session.execute(insert(Tenant).values(slug=slug, name=slug).on_conflict_do_nothing())
        found = session.scalar(select(Tenant).where(Tenant.slug == slug))
    return found


def upsert_products(session: Session, tenant_id: int, rows: list[CatalogRow]) -> dict[str, int]:
    """Insert new products, update changed ones, leave unchanged rows unwritten."""
    existing = {
        p.pim_id: p for p in session.scalars(select(Product).where(Product.tenant_id == tenant_id))
    }
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row in rows:
        values = {
            "name": row.name,
            "step_filename": row.step_file,
            "attributes": {k: v for k, v in
                           {"category_key": row.category_key, "lagertyp": row.lagertyp, **row.attributes}.items() if v},
            "active": True,
        }
        product = existing.get(row.pim_id)
        if product is None:
            session.add(Product(tenant_id=tenant_id, pim_id=row.pim_id, **values))
            counts["created"] += 1
        elif any(getattr(product, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(product, k, v)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    return counts


def products_for_step(session: Session, tenant_id: int, filename: str) -> list[Product]:
    """Products whose catalogue row names this STEP file, or whose PIM-ID is its stem."""
    stem = Path(filename).stem
    return list(
        session.scalars(
            select(Product)
            .where(Product.tenant_id == tenant_id, Product.active)
            .where(or_(Product.step_filename == filename,
                       (Product.step_filename.is_(None)) & (Product.pim_id == stem)))
            .order_by(Product.pim_id)
        )
    )


def active_products(session: Session, tenant_id: int) -> list[Product]:
    return list(session.scalars(
        select(Product).where(Product.tenant_id == tenant_id, Product.active).order_by(Product.pim_id)))


def product(session: Session, tenant_id: int, pim_id: str) -> Product | None:
    return session.scalar(select(Product).where(Product.tenant_id == tenant_id, Product.pim_id == pim_id))


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
        tenant_id=tenant_id, product_id=product_id, filename=Path(path).name, kind=kind, sha256=sha256,
        size_bytes=Path(path).stat().st_size, status="rejected" if error else "ok", error=error,
    )
    statement = insert(ProductFile).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "filename", "sha256"],
            set_={k: statement.excluded[k] for k in ("product_id", "status", "error")}
            | {"recorded_at": func.now()},
        )
    )
