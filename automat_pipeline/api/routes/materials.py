"""The tenant's material library and aliases, managed by its admins, and re-making what a change
touches.

Every change answers with the products whose parts it makes look different (read from the part
names each conversion recorded); ``dry_run`` shows that without changing anything. ``POST
/materials/remake`` then re-makes those products' GLBs and everything made from them in one
Dagster backfill.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from automat_pipeline.api.dagster_client import DagsterUnavailable
from automat_pipeline.api.deps import Id, Tx, Who
from automat_pipeline.api.launcher import launch_remake
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import Product, Tenant
from automat_pipeline.errors import AutomatError, NotFound
from automat_pipeline.materials import ALIASES, LIBRARY, AliasIn, MaterialIn

router = APIRouter(tags=["materials"])
DryRun = Annotated[bool, Query(description="Only tell what the change would touch; change nothing.")]
SHOWN = 200  # products listed with their parts; every affected id is in product_ids
MAX_ALIASES = 500


class MaterialOut(MaterialIn):
    origin: str = Field(description="shipped, tenant (its own) or override (its own, replacing a shipped one).")
    fallback: bool = Field(description="Whether it is the tenant's fallback_material (cannot be deleted).")
    aliases: list[str] = Field(description="The tenant's alias patterns that name it.")


class AliasOut(AliasIn):
    origin: str = Field(description="tenant (tried first, in order) or shipped (tried after the tenant's).")


class Affected(BaseModel):
    product_id: int
    pim_id: str
    parts: dict[str, dict[str, str]] = Field(description="Part → its material before and after.")


class ChangeOut(BaseModel):
    applied: bool = Field(description="False for a dry run.")
    products: int = Field(description="How many converted products look different after the change.")
    product_ids: list[int] = Field(description="All of them: what POST /materials/remake takes.")
    examples: list[Affected] = Field(description=f"The first {SHOWN}, with the parts that change.")


class RemakeIn(BaseModel):
    product_ids: list[Id] = Field(min_length=1, max_length=10_000, description="Products to re-make.")


class RemakeOut(BaseModel):
    backfill_id: str = Field(description="The Dagster backfill (the operator UI's Backfills page).")
    products: int
    steps: list[str] = Field(description="What is re-made: the conversion and every step made from it before.")


def _tenant(who: Who, tx: Tx, write: bool) -> Tenant:
    who.require(Permission.settings if write else Permission.trigger_renders)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


def _change(changes: list[dict], applied: bool) -> ChangeOut:
    return ChangeOut(
        applied=applied,
        products=len(changes),
        product_ids=[c["product_id"] for c in changes],
        examples=[Affected(**c) for c in changes[:SHOWN]],
    )


@router.get("/materials")
def list_materials(who: Who, tx: Tx) -> list[MaterialOut]:
    """The tenant's library: the shipped materials and its own (PMs and admins)."""
    tenant = _tenant(who, tx, write=False)
    own, shipped = repository.own_materials(tx, tenant), {m.name for m in LIBRARY}
    fallback, aliases = repository.fallback_material(tenant), repository.tenant_aliases(tx, tenant.id)
    return [
        MaterialOut(
            name=m.name,
            base_color=m.base_color,
            metallic=m.metallic,
            roughness=m.roughness,
            description=m.description,
            origin=("override" if m.name in shipped else "tenant") if m.name in own else "shipped",
            fallback=m.name == fallback,
            aliases=[pattern for pattern, material in aliases if material == m.name],
        )
        for m in sorted(repository.material_library(tx, tenant).values(), key=lambda m: m.name)
    ]


@router.put("/materials/{name}", responses={422: {"description": "Invalid values, or too many materials."}})
def put_material(name: str, body: MaterialIn, who: Who, tx: Tx, dry_run: DryRun = False) -> ChangeOut:
    """Add or replace one of the tenant's own materials (a shipped name: the tenant's overrides it)."""
    tenant = _tenant(who, tx, write=True)
    if body.name != name:
        raise HTTPException(422, f"the body names {body.name!r}, the path {name!r}")
    return _change(repository.put_material(tx, tenant, body.as_material(), apply=not dry_run), applied=not dry_run)


@router.delete(
    "/materials/{name}",
    responses={
        404: {"description": "No such material of the tenant's own."},
        409: {"description": "Shipped, the fallback material, or named by aliases."},
    },
)
def delete_material(name: str, who: Who, tx: Tx, dry_run: DryRun = False) -> ChangeOut:
    """Delete one of the tenant's own materials (an override: the shipped one comes back)."""
    tenant = _tenant(who, tx, write=True)
    return _change(repository.remove_material(tx, tenant, name, apply=not dry_run), applied=not dry_run)


@router.get("/material-aliases")
def list_aliases(who: Who, tx: Tx) -> list[AliasOut]:
    """The aliases in the order they are tried: the tenant's, then the shipped ones."""
    tenant = _tenant(who, tx, write=False)
    own = [AliasOut(pattern=p, material=m, origin="tenant") for p, m in repository.tenant_aliases(tx, tenant.id)]
    return own + [AliasOut(pattern=p, material=m, origin="shipped") for p, m in ALIASES]


INVALID_ALIASES = {422: {"description": "An alias names a missing material, repeats or is shadowed by an earlier one."}}


@router.put("/material-aliases", responses=INVALID_ALIASES)
def put_aliases(
    body: Annotated[list[AliasIn], Field(max_length=MAX_ALIASES)], who: Who, tx: Tx, dry_run: DryRun = False
) -> ChangeOut:
    """Replace the tenant's aliases, tried in this order before the shipped ones."""
    tenant = _tenant(who, tx, write=True)
    return _change(repository.put_aliases(tx, tenant, body, apply=not dry_run), applied=not dry_run)


@router.post(
    "/materials/remake",
    status_code=202,
    responses={
        404: {"description": "A product that is not the tenant's."},
        422: {"description": "A product without a converted CAD file."},
        503: {"description": "Dagster does not answer: nothing was launched."},
    },
)
def remake(body: RemakeIn, request: Request, who: Who, tx: Tx) -> RemakeOut:
    """Re-make the products' production GLBs and everything made from them, as one backfill."""
    tenant = _tenant(who, tx, write=True)
    ids = sorted(set(body.product_ids))
    products = list(tx.scalars(select(Product).where(Product.tenant_id == tenant.id, Product.id.in_(ids))))
    missing = sorted(set(ids) - {p.id for p in products})
    if missing:
        raise NotFound(f"no products {', '.join(map(str, missing[:20]))}")
    made = repository.made_for(tx, tenant.id, ids)
    unconverted = sorted(set(ids) - repository.has_cad(tx, tenant.id, ids))
    if unconverted:
        raise AutomatError("not_converted", f"products without a converted CAD file: {unconverted[:20]}")
    try:
        backfill_id, steps = launch_remake(request.app.state.dagster, tenant, products, made, "materials changed")
    except DagsterUnavailable as error:
        raise HTTPException(503, f"Dagster does not answer; nothing was launched ({error})") from error
    return RemakeOut(backfill_id=backfill_id, products=len(products), steps=steps)
