"""Products (list, search, detail with media) and output types."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert

from automat_pipeline import output_types
from automat_pipeline.api.deps import Id, Tx, Who, owned, settings
from automat_pipeline.api.schemas import MediaOut, media_out
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import MediaAsset, Product, TenantOutputType
from automat_pipeline.notify import events

router = APIRouter(tags=["catalogue"])


class ProductOut(BaseModel):
    id: int = Field(description="The product's id.")
    pim_id: str = Field(description="The PIM-ID from the product list.", examples=["6204-2RS"])
    key: str = Field(description="The PIM-ID made safe for partition keys and paths.")
    name: str = Field(description="Product name.")
    category_key: str | None = Field(description="Category from the product list.")
    lagertyp: str | None = Field(description="Bearing type (Lagertyp) from the product list.")
    has_cad: bool = Field(description="Whether its STEP file has been converted (a production GLB exists).")


class ProductDetail(ProductOut):
    media: list[MediaOut] = Field(description="Its renders, newest first.")


class Page(BaseModel):
    total: int = Field(description="Matching products.")
    items: list[ProductOut] = Field(description="This page.")


def product_out(p: Product, has_cad: bool) -> ProductOut:
    return ProductOut(
        id=p.id,
        pim_id=p.pim_id,
        key=p.key,
        name=p.name,
        category_key=p.category_key,
        lagertyp=p.lagertyp,
        has_cad=has_cad,
    )


@router.get("/products")
def list_products(
    who: Who,
    tx: Tx,
    q: str | None = Query(None, max_length=200, description="Words in the name or PIM-ID."),
    category_key: str | None = Query(None, max_length=200, description="Only this category."),
    lagertyp: str | None = Query(None, max_length=200, description="Only this bearing type."),
    limit: int = Query(50, ge=1, le=500, description="Page size."),
    offset: int = Query(0, ge=0, le=10_000_000, description="Items to skip."),
) -> Page:
    """Active products of the tenant, by PIM-ID."""
    who.require(Permission.own_orders)
    query = select(Product).where(Product.tenant_id == who.tenant(), Product.active)
    if q:
        query = query.where(Product.id.in_(repository.product_search(q)))
    if category_key:
        query = query.where(Product.category_key == category_key)
    if lagertyp:
        query = query.where(Product.lagertyp == lagertyp)
    total = tx.scalar(select(func.count()).select_from(query.subquery()))
    products = list(tx.scalars(query.order_by(Product.pim_id).limit(limit).offset(offset)))
    cad = repository.has_cad(tx, who.tenant(), [p.id for p in products])
    return Page(total=total, items=[product_out(p, p.id in cad) for p in products])


@router.get("/products/{product_id}", responses={404: {"description": "No such product in your tenant."}})
def product_detail(product_id: Id, who: Who, tx: Tx) -> ProductDetail:
    """One product with its renders."""
    who.require(Permission.own_orders)
    product = owned(tx, Product, product_id, who, "product")
    media = tx.scalars(
        select(MediaAsset)
        .where(MediaAsset.product_id == product.id, MediaAsset.tenant_id == who.tenant())
        .order_by(MediaAsset.updated_at.desc())
    )
    return ProductDetail(
        **product_out(product, bool(repository.has_cad(tx, product.tenant_id, [product.id]))).model_dump(),
        media=[media_out(m) for m in media],
    )


@router.get("/output-types")
def list_output_types(who: Who, tx: Tx) -> list[output_types.OutputType]:
    """The tenant's output types: the shipped ones, its own added or overriding by name."""
    who.require(Permission.own_orders)
    return repository.output_types_of(tx, who.tenant())


@router.put("/output-types/{name}", responses={422: {"description": "Invalid settings."}})
def put_output_type(
    name: str, body: output_types.OutputType, request: Request, who: Who, tx: Tx
) -> output_types.OutputType:
    """Create or replace one of the tenant's output types (tenant admins and above)."""
    who.require(Permission.settings)
    if body.name != name:
        raise HTTPException(422, f"the body names {body.name!r}, the path {name!r}")
    output_types.check_limits(body, settings(request))
    upsert = insert(TenantOutputType).values(
        tenant_id=who.tenant(), name=name, settings=body.model_dump(exclude={"name"})
    )
    before = tx.scalar(  # PostgreSQL 18: RETURNING old.* is the row as it was (null when new)
        upsert.on_conflict_do_update(
            index_elements=["tenant_id", "name"], set_={"settings": upsert.excluded.settings}
        ).returning(literal_column("old.settings"))
    )
    events.record(
        tx,
        "output_type.changed",
        ("output_type", name),
        tenant_id=who.tenant(),
        actor=who,
        before=before or {},
        after=body.model_dump(exclude={"name"}),
    )
    return body


@router.delete(
    "/output-types/{name}",
    status_code=204,
    responses={404: {"description": "The tenant has no own type of that name."}},
)
def delete_output_type(name: str, who: Who, tx: Tx) -> None:
    """Delete the tenant's own output type (a shipped one it overrode comes back)."""
    who.require(Permission.settings)
    deleted = tx.execute(
        delete(TenantOutputType).where(TenantOutputType.tenant_id == who.tenant(), TenantOutputType.name == name)
    )
    if not deleted.rowcount:
        raise HTTPException(404, f"no own output type {name!r}")
    events.record(tx, "output_type.deleted", ("output_type", name), tenant_id=who.tenant(), actor=who)
