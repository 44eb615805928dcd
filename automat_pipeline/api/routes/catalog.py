"""Products (list, search, facets, detail with media, parts with their materials), output types and
the rules an order must keep to."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert

from automat_pipeline import output_types, policy, templates
from automat_pipeline.api.deps import Id, Tx, Who, owned, settings
from automat_pipeline.api.files import media_path
from automat_pipeline.api.schemas import MediaOut, media_out
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import MediaAsset, Product, Tenant, TenantOutputType
from automat_pipeline.notify import events
from automat_pipeline.tenant_settings import Engine, TenantSettings

router = APIRouter(tags=["catalogue"])


class ProductOut(BaseModel):
    id: int = Field(description="The product's id.")
    pim_id: str = Field(description="The PIM-ID from the product list.", examples=["6204-2RS"])
    key: str = Field(description="The PIM-ID made safe for partition keys and paths.")
    name: str = Field(description="Product name.")
    category_key: str | None = Field(description="Category from the product list.")
    lagertyp: str | None = Field(description="Bearing type (Lagertyp) from the product list.")
    has_cad: bool = Field(description="Whether its STEP file has been converted (a production GLB exists).")
    thumbnail: int | None = Field(
        None, description="Its newest completed thumbnail's media id (GET /media/{id}/file); null: none yet."
    )


class ProductDetail(ProductOut):
    media: list[MediaOut] = Field(description="Its renders, newest first.")


class Page(BaseModel):
    total: int = Field(description="Matching products.")
    items: list[ProductOut] = Field(description="This page.")


class Facet(BaseModel):
    value: str = Field(description="A value products have.")
    count: int = Field(description="Active products with it.")


class Facets(BaseModel):
    category_key: list[Facet] = Field(description="Categories (GET /products?category_key=…), most products first.")
    lagertyp: list[Facet] = Field(description="Bearing types (GET /products?lagertyp=…), most products first.")


class Part(BaseModel):
    name: str = Field(description="The part's name in the CAD file (the node's name in both GLBs).")
    color: str | None = Field(description="Its colour in the CAD file (#rrggbb), as the viewer GLB shows it.")
    material: str | None = Field(description="The library material it resolved to (the production GLB's).")
    material_source: str | None = Field(
        description="How: exact match, alias match, catalogue assignment, or fallback (no rule matched: the "
        "magenta fallback material, to fix in the alias table or the catalogue)."
    )


class Parts(BaseModel):
    product_id: int = Field(description="The product.")
    parts: list[Part] = Field(description="Every part of its last conversion, in the CAD file's order.")
    fallback_parts: list[str] = Field(description="The names of the parts on the fallback material.")


class OrderRules(BaseModel):
    max_order_size: int = Field(description="Most lines one order may hold (the tenant's setting).")
    render_engines_allowed: list[Engine] = Field(
        description="Engines the tenant's renders may use: a line whose output type renders with another is refused."
    )


def product_out(p: Product, has_cad: bool, thumbnail: int | None = None) -> ProductOut:
    return ProductOut(
        id=p.id,
        pim_id=p.pim_id,
        key=p.key,
        name=p.name,
        category_key=p.category_key,
        lagertyp=p.lagertyp,
        has_cad=has_cad,
        thumbnail=thumbnail,
    )


def _thumbnails(tx, tenant_id: int, product_ids: list[int]) -> dict[int, int]:
    """Product id → its newest completed thumbnail's media id."""
    rows = tx.execute(
        select(MediaAsset.product_id, MediaAsset.id)
        .where(
            MediaAsset.tenant_id == tenant_id,
            MediaAsset.product_id.in_(product_ids),
            MediaAsset.asset == "thumbnail",
            MediaAsset.status == "completed",
        )
        .order_by(MediaAsset.updated_at)
    )
    return dict(rows.all())


@router.get("/products")
def list_products(
    who: Who,
    tx: Tx,
    q: str | None = Query(None, max_length=200, description="Words in the name or PIM-ID."),
    category_key: str | None = Query(None, max_length=200, description="Only this category."),
    lagertyp: str | None = Query(None, max_length=200, description="Only this bearing type."),
    has_media: bool | None = Query(
        None, description="true: only products with a completed media file (a render or a GLB); false: only without."
    ),
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
    if has_media is not None:
        media = select(MediaAsset.id).where(
            MediaAsset.tenant_id == who.tenant(), MediaAsset.product_id == Product.id, MediaAsset.status == "completed"
        )
        query = query.where(media.exists() if has_media else ~media.exists())
    total = tx.scalar(select(func.count()).select_from(query.subquery()))
    products = list(tx.scalars(query.order_by(Product.pim_id).limit(limit).offset(offset)))
    ids = [p.id for p in products]
    cad, thumbnails = repository.has_cad(tx, who.tenant(), ids), _thumbnails(tx, who.tenant(), ids)
    return Page(total=total, items=[product_out(p, p.id in cad, thumbnails.get(p.id)) for p in products])


@router.get("/products/facets")
def product_facets(who: Who, tx: Tx) -> Facets:
    """The categories and bearing types of the tenant's active products, with counts: the filters'
    choices."""
    who.require(Permission.own_orders)

    def facet(column) -> list[Facet]:
        rows = tx.execute(
            select(column, func.count())
            .where(Product.tenant_id == who.tenant(), Product.active, column.is_not(None))
            .group_by(column)
            .order_by(func.count().desc(), column)
        )
        return [Facet(value=value, count=count) for value, count in rows]

    return Facets(category_key=facet(Product.category_key), lagertyp=facet(Product.lagertyp))


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
    cad = bool(repository.has_cad(tx, product.tenant_id, [product.id]))
    thumbnail = _thumbnails(tx, product.tenant_id, [product.id]).get(product.id)
    return ProductDetail(**product_out(product, cad, thumbnail).model_dump(), media=[media_out(m) for m in media])


@router.get(
    "/products/{product_id}/parts",
    responses={404: {"description": "No such product in your tenant, or no conversion of it yet."}},
)
def product_parts(product_id: Id, request: Request, who: Who, tx: Tx) -> Parts:
    """The parts of the product's converted CAD file with the material each resolved to, and which
    fell back to the magenta fallback material (the conversion's ``cad_metadata``, kept beside its
    viewer GLB)."""
    who.require(Permission.own_orders)
    product = owned(tx, Product, product_id, who, "product")
    glb = tx.scalar(
        select(MediaAsset).where(
            MediaAsset.tenant_id == product.tenant_id,
            MediaAsset.product_id == product.id,
            MediaAsset.asset == "glb_geometry",
            MediaAsset.status == "completed",
        )
    )
    if glb is None:
        raise HTTPException(404, f"product {product_id} has no converted CAD file yet")
    metadata = media_path(settings(request).media_dir, glb).with_name("cad_metadata.json")
    if not metadata.is_file():
        raise HTTPException(404, f"product {product_id} has no part list (cad_metadata) yet")
    parts = [
        Part(name=p["name"], color=p.get("color"), material=p.get("material"), material_source=p.get("material_source"))
        for p in json.loads(Path(metadata).read_text())["parts"]
    ]
    return Parts(
        product_id=product.id,
        parts=parts,
        fallback_parts=[p.name for p in parts if p.material_source == "fallback"],
    )


@router.get("/output-types")
def list_output_types(who: Who, tx: Tx) -> list[output_types.OutputType]:
    """The tenant's output types: the shipped ones, its own added or overriding by name."""
    who.require(Permission.own_orders)
    return repository.output_types_of(tx, who.tenant())


@router.get("/order-rules")
def order_rules(who: Who, tx: Tx) -> OrderRules:
    """What an order must keep to, for everyone who orders: the tenant's max_order_size and
    render_engines_allowed (the rules POST /orders/{id}/submit checks; the other settings are
    GET /settings, tenant admins only)."""
    who.require(Permission.own_orders)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    rules = TenantSettings.of(tenant.settings)
    return OrderRules(max_order_size=rules.max_order_size, render_engines_allowed=rules.render_engines_allowed)


@router.put("/output-types/{name}", responses={422: {"description": "Invalid settings."}})
def put_output_type(
    name: str, body: output_types.OutputType, request: Request, who: Who, tx: Tx
) -> output_types.OutputType:
    """Create or replace one of the tenant's output types (tenant admins and above)."""
    who.require(Permission.settings)
    if body.name != name:
        raise HTTPException(422, f"the body names {body.name!r}, the path {name!r}")
    output_types.check_limits(body, settings(request))
    policy.check_engine(TenantSettings.of(tx.get(Tenant, who.tenant()).settings), body)
    if body.template:
        templates.require_usable(tx, who.tenant(), body.template)
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
