"""Workflows over the API: the steps, validation, saved workflows per tenant, dry runs and launches.

A workflow launches as Dagster's asset job with its selection (one stable job, the selection
passed at launch), tagged ``automat/workflow``: saving a workflow needs no code-location reload.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from automat_pipeline import policy, workflows
from automat_pipeline.api.dagster_client import DagsterUnavailable
from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.launcher import launch_workflow
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import Product, SavedWorkflow, Tenant
from automat_pipeline.keys import KEY_PART, KEY_PATTERN, partition_key
from automat_pipeline.notify import events
from automat_pipeline.tenant_settings import TenantSettings

router = APIRouter(prefix="/workflows", tags=["workflows"])
NAME = {"pattern": KEY_PATTERN, "description": "The workflow's name, unique per tenant."}


class Validation(BaseModel):
    valid: bool = Field(description="Whether the workflow may be saved and run.")
    errors: list[str] = Field(description="Each names its node or edge.")


class SavedOut(BaseModel):
    name: str = Field(description="The workflow's name.")
    revision: int = Field(description="Counts its saves; 0 for the built-in default.")
    document: dict = Field(description="The workflow (version, nodes, edges).")


class PlanOut(BaseModel):
    selection: list[str] = Field(description="The asset keys a run would materialize.")
    run_config: dict = Field(description="The run config carrying the nodes' parameters.")


class Launch(BaseModel):
    product_ids: list[int] = Field(min_length=1, max_length=500, description="Products to run it for; one run each.")


class Launched(BaseModel):
    runs: dict[str, str] = Field(description="Partition (tenant|product) → Dagster run id.")


def check(document: dict) -> workflows.Workflow:
    try:
        return workflows.validate(document)
    except workflows.WorkflowError as error:
        raise HTTPException(422, error.errors) from error


def saved_out(saved: workflows.Saved) -> SavedOut:
    return SavedOut(name=saved.name, revision=saved.revision, document=saved.document)


@router.get("/steps")
def list_steps(who: Who) -> list[dict]:
    """Every step: its parameters (JSON schema with help texts), the upstream and downstream
    steps the asset graph allows, and whether it renders many products in one run (``batch``)."""
    who.require(Permission.own_orders)
    return workflows.step_catalog()


@router.post("/validate")
def validate(document: dict, who: Who) -> Validation:
    """Check a workflow without saving it."""
    who.require(Permission.own_orders)
    try:
        workflows.validate(document)
    except workflows.WorkflowError as error:
        return Validation(valid=False, errors=error.errors)
    return Validation(valid=True, errors=[])


@router.get("")
def list_workflows(who: Who, tx: Tx) -> list[SavedOut]:
    """The tenant's workflows, the built-in ``default`` (the full pipeline) first."""
    who.require(Permission.own_orders)
    rows = tx.scalars(select(SavedWorkflow).where(SavedWorkflow.tenant_id == who.tenant()).order_by(SavedWorkflow.name))
    default = repository.saved_workflow(tx, who.tenant(), workflows.DEFAULT)
    return [saved_out(default)] + [SavedOut(name=w.name, revision=w.revision, document=w.document) for w in rows]


@router.get("/{name}")
def get_workflow(name: str, who: Who, tx: Tx) -> SavedOut:
    """One workflow."""
    who.require(Permission.own_orders)
    return saved_out(repository.saved_workflow(tx, who.tenant(), name))


@router.put("/{name}", responses={409: {"description": "The built-in default cannot be replaced."}})
def put_workflow(name: str, document: dict, who: Who, tx: Tx) -> SavedOut:
    """Save a workflow (tenant admins and above); it must validate."""
    who.require(Permission.settings)
    if not KEY_PART.fullmatch(name):
        raise HTTPException(422, f"workflow name {name!r}: {NAME['pattern']}")
    if name == workflows.DEFAULT:
        raise HTTPException(409, "the default workflow is built in")
    check(document)
    upsert = insert(SavedWorkflow).values(tenant_id=who.tenant(), name=name, revision=1, document=document)
    revision = tx.scalar(
        upsert.on_conflict_do_update(
            index_elements=["tenant_id", "name"],
            set_={
                "document": upsert.excluded.document,
                "revision": SavedWorkflow.revision + 1,
                "updated_at": func.now(),
            },
        ).returning(SavedWorkflow.revision)
    )
    events.record(tx, "workflow.saved", ("workflow", name), tenant_id=who.tenant(), actor=who, revision=revision)
    return SavedOut(name=name, revision=revision, document=document)


@router.delete("/{name}", status_code=204)
def delete_workflow(name: str, who: Who, tx: Tx) -> None:
    """Delete a saved workflow (tenant admins and above)."""
    who.require(Permission.settings)
    found = tx.scalar(select(SavedWorkflow).where(SavedWorkflow.tenant_id == who.tenant(), SavedWorkflow.name == name))
    if found is None:
        raise HTTPException(404, f"no workflow {name!r}")
    tx.delete(found)
    events.record(
        tx, "workflow.deleted", ("workflow", name), tenant_id=who.tenant(), actor=who, revision=found.revision
    )


class PlanIn(BaseModel):
    product_id: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Also check that every upstream step outside the workflow is materialized for this product.",
    )


def _ready(request: Request, workflow: workflows.Workflow, partition: str) -> None:
    """422 naming each node whose upstream step is neither in the workflow nor materialized."""
    try:
        done = request.app.state.dagster.materialized(workflows.upstream_steps(workflow), partition)
    except DagsterUnavailable as error:
        raise HTTPException(503, f"Dagster does not answer: {error}") from error
    errors = workflows.missing_upstream(workflow, done)
    if errors:
        raise HTTPException(422, [f"{e} {partition}" for e in errors])


def _partitions(tx, who, product_ids: list[int]) -> list[str]:
    tenant = tx.get(Tenant, who.tenant())
    products = tx.scalars(select(Product).where(Product.tenant_id == who.tenant(), Product.id.in_(product_ids)))
    keys = sorted({partition_key(tenant.slug, p.key) for p in products})
    if len(keys) != len(set(product_ids)):
        raise HTTPException(404, "some of those products are not in your tenant")
    return keys


@router.post("/{name}/plan", responses={503: {"description": "Dagster does not answer (with product_id)."}})
def plan(name: str, request: Request, who: Who, tx: Tx, body: PlanIn | None = None) -> PlanOut:
    """The dry run: the asset selection and run config a launch would use. Nothing is launched."""
    who.require(Permission.own_orders)
    workflow = check(repository.saved_workflow(tx, who.tenant(), name).document)
    if body and body.product_id:
        _ready(request, workflow, _partitions(tx, who, [body.product_id])[0])
    compiled = workflows.compile_workflow(workflow)
    return PlanOut(selection=compiled.selection, run_config=compiled.run_config)


@router.post(
    "/{name}/runs",
    status_code=202,
    responses={409: {"description": "The tenant is deactivated."}, 503: {"description": "Dagster does not answer."}},
)
def launch(name: str, body: Launch, request: Request, who: Who, tx: Tx) -> Launched:
    """Run the workflow for products (project managers and above): one Dagster run per product."""
    who.require(Permission.trigger_renders)
    workflow = repository.saved_workflow(tx, who.tenant(), name)
    checked = check(workflow.document)
    tenant = tx.get(Tenant, who.tenant())
    compiled = workflows.compile_workflow(checked)
    rules = TenantSettings.of(tenant.settings)
    policy.check_size(rules, len(body.product_ids), "a workflow run")
    for output_type in policy.plan_output_types(
        compiled.selection, compiled.run_config, repository.output_types_of(tx, tenant.id)
    ):
        policy.check_engine(rules, output_type)
    keys = _partitions(tx, who, body.product_ids)
    for key in keys:
        _ready(request, checked, key)
    started = datetime.now(UTC).timestamp()
    try:
        runs = launch_workflow(request.app.state.dagster, tenant, workflow, compiled, keys, started)
    except DagsterUnavailable as error:
        raise HTTPException(503, f"Dagster does not answer ({error})") from error
    return Launched(runs=runs)
