"""The one place the API launches work into Dagster: order lines and workflow runs, with their tags.

A submitted order's lines are launched at once when the Dagster webserver answers; while it does
not, they stay pending with the reason, and ``LaunchLoop`` launches them once it is back: nothing
is lost. Every launch carries a launch key (``tags.LAUNCH_KEY``), so a launch whose answer was lost
is found again instead of started twice.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from automat_pipeline import tags, workflows
from automat_pipeline.api.dagster_client import DagsterClient, DagsterRefused, DagsterUnavailable
from automat_pipeline.api.deps import scoped_session
from automat_pipeline.db import repository
from automat_pipeline.db.models import Order, OrderLine, Product, Tenant
from automat_pipeline.errors import NotFound
from automat_pipeline.keys import partition_key
from automat_pipeline.notify import events
from automat_pipeline.output_types import OutputType

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 5.0
MAX_REFUSALS = 3  # launches Dagster refused before the line fails: a code location reloading refuses briefly


def run_tags(
    order: Order | None = None, line: OrderLine | None = None, workflow: workflows.Saved | None = None
) -> dict[str, str]:
    """The tags of a run the API launches: its order and line, and the workflow revision it runs."""
    found = {}
    if order is not None:
        found[tags.ORDER] = str(order.id)
    if line is not None:
        found[tags.ORDER_LINE] = str(line.id)
    if workflow is not None:
        found |= {tags.WORKFLOW: workflow.name, tags.WORKFLOW_REVISION: str(workflow.revision)}
    return found


def compiled(tx: Session, order: Order) -> tuple[workflows.Saved, workflows.Plan]:
    """The order's saved workflow and its plan (raises ``workflows.WorkflowError``)."""
    saved = repository.saved_workflow(tx, order.tenant_id, order.workflow)
    return saved, workflows.compile_workflow(workflows.validate(saved.document))


def launch_line(
    client: DagsterClient,
    tenant: Tenant,
    product: Product,
    output_type: OutputType,
    order: Order,
    line: OrderLine,
    workflow: tuple[workflows.Saved, workflows.Plan] | None,
) -> str:
    """Launch one order line: the order's workflow, or the step that renders ``output_type`` alone;
    the render step renders just that output type. The run id."""
    assets, ops, saved = [output_type.step], {}, None
    if workflow:
        saved, plan = workflow
        assets, ops = plan.selection, dict(plan.run_config.get("ops", {}))
    ops[output_type.step] = {"config": {"output_types": [output_type.name]}}
    launch_key = f"{line.id}@{order.submitted_at.timestamp():.6f}"  # each submission launches once
    return client.launch(
        assets,
        partition_key(tenant.slug, product.key),
        {"ops": ops} if ops else {},
        run_tags(order, line, saved),
        launch_key,
    )


def launch_lines(tx: Session, client: DagsterClient, order: Order, types: dict[str, OutputType] | None = None) -> int:
    """Launch the order's unlaunched lines. A line Dagster accepts is queued; one that can never
    launch (its output type or workflow is gone, or Dagster refused it ``MAX_REFUSALS`` times) fails
    with the reason, and the others go on; while Dagster does not answer, the rest stay pending.
    Returns how many launched. ``types``: the tenant's output types by name, where the caller has them."""
    tenant = tx.get(Tenant, order.tenant_id)
    types = types or {t.name: t for t in repository.output_types_of(tx, order.tenant_id)}
    pending = list(
        tx.scalars(
            select(OrderLine).where(OrderLine.order_id == order.id, OrderLine.state == "pending").order_by(OrderLine.id)
        )
    )
    try:
        workflow = compiled(tx, order) if order.workflow else None  # once per order, not per line
    except (NotFound, workflows.WorkflowError) as error:
        for line in pending:
            _refused(line, f"workflow {order.workflow!r} cannot run: {error}")
        return 0
    launched = 0
    for line in pending:
        if line.output_type not in types:
            _refused(line, f"output type {line.output_type!r} no longer exists")
            continue
        try:
            product = tx.get(Product, line.product_id)
            line.run_id = launch_line(client, tenant, product, types[line.output_type], order, line, workflow)
            line.state, line.launch_error = "queued", None
            launched += 1
        except DagsterRefused as error:
            line.launch_attempts += 1
            line.launch_error = str(error)[:2000]
            if line.launch_attempts >= MAX_REFUSALS:
                _refused(line, f"Dagster refused the launch {line.launch_attempts} times: {error}")
        except DagsterUnavailable as error:
            line.launch_error = str(error)[:2000]
            break  # the webserver is down: the loop tries again
    return launched


def _refused(line: OrderLine, reason: str) -> None:
    line.state, line.error_class, line.reason = "failed", "launch_refused", reason[:2000]


def launch_workflow(
    client: DagsterClient,
    tenant: Tenant,
    saved: workflows.Saved,
    plan: workflows.Plan,
    partitions: list[str],
    started: float,
) -> dict[str, str]:
    """One run of the workflow per partition; partition → run id. A refusal names how many launched."""
    runs: dict[str, str] = {}
    try:
        for key in partitions:
            launch_key = f"workflow:{tenant.id}:{saved.name}:{saved.revision}:{key}@{started:.6f}"
            runs[key] = client.launch(plan.selection, key, plan.run_config, run_tags(workflow=saved), launch_key)
    except DagsterUnavailable as error:
        raise DagsterUnavailable(f"{len(runs)} of {len(partitions)} launched: {error}") from error
    return runs


def pending_orders(database_url: str) -> list[tuple[int, int]]:
    """Submitted orders with a line not launched yet, of every tenant (the loop runs for all):
    ``(order id, tenant id)``, through the database's one function that may see them all."""
    with scoped_session(database_url, None) as s:
        return [tuple(row) for row in s.execute(text("SELECT order_id, tenant_id FROM automat_pending_orders()"))]


def launch_pending(database_url: str, client: DagsterClient) -> int:
    """Launch every submitted line that is still waiting (the webserver was down at submission),
    each order in its own tenant's transaction."""
    if not client.healthy():
        return 0
    launched = 0
    for order_id, tenant_id in pending_orders(database_url):
        try:
            with scoped_session(database_url, tenant_id) as s:
                order = s.get(Order, order_id, with_for_update=True)
                if order.status == "submitted":
                    launched += launch_lines(s, client, order)
                    events.lines_settled(s, OrderLine.order_id == order.id)  # launches refused for good
        except SQLAlchemyError:
            raise
        except Exception:  # one order that cannot be launched must not hold up the others
            log.exception("launcher: order %s could not be launched", order_id)
    return launched


class LaunchLoop:
    """A thread that launches pending lines every ``INTERVAL_SECONDS`` until stopped."""

    def __init__(self, database_url: str, client: DagsterClient):
        self.database_url, self.client = database_url, client
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="order-launcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        while not self.stopped.wait(INTERVAL_SECONDS):
            try:
                launch_pending(self.database_url, self.client)
            except SQLAlchemyError as error:  # the database is away: next time
                log.warning("launcher: %s", error)
            except Exception:  # one bad order must never end the loop for every other one
                log.exception("launcher: an order could not be launched; the loop goes on")
