"""The one place the API launches work into Dagster: order lines, workflow runs and template checks.

An order's lines of one output type whose step renders many products in one run (thumbnails)
are launched together as one backfill (``launch_batch``): a 500-line order is a few runs, not 500.

A submitted order's lines (an uploaded template's check) are launched at once when the Dagster
webserver answers; while it does not, they stay pending (checking) with the reason, and
``LaunchLoop`` launches them once it is back: nothing is lost. Every launch carries a launch key
(``tags.LAUNCH_KEY``), so a launch whose answer was lost is found again instead of started twice.
Nothing launches for a deactivated tenant: its submitted lines stay pending, saying why, until it
is reactivated.

A line Dagster refuses (or that alone fails while Dagster answers) is tried again after a backoff
that doubles with each attempt (``backoff``), and fails with the reason after ``MAX_ATTEMPTS``; the
order's other lines and every other order go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from automat_pipeline import tags, templates, workflows
from automat_pipeline.api.dagster_client import ASSET_JOB, DagsterClient, DagsterRefused, DagsterUnavailable
from automat_pipeline.api.deps import scoped_session
from automat_pipeline.db import repository
from automat_pipeline.db.models import Order, OrderLine, Product, RenderTemplate, Tenant
from automat_pipeline.errors import Conflict, NotFound
from automat_pipeline.keys import partition_key
from automat_pipeline.notify import events
from automat_pipeline.output_types import OutputType
from automat_pipeline.step_params import PARAMETERS

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 5.0
MAX_ATTEMPTS = 5  # failed launches of one line before it fails: a code location reloading refuses briefly
TENANT_INACTIVE = "the tenant is deactivated: this line launches once it is reactivated"
BACKOFF_SECONDS = 10  # after the first failed launch; doubled after each further one (10, 20, 40, 80 s)


def backoff(attempts: int) -> timedelta:
    """How long a line waits after its ``attempts``-th failed launch before the next one."""
    return timedelta(seconds=BACKOFF_SECONDS * 2 ** (attempts - 1))


def due(line: OrderLine, now: datetime) -> bool:
    """Whether ``line`` may be launched now: never tried, or its backoff is over."""
    return line.launch_attempted_at is None or now >= line.launch_attempted_at + backoff(line.launch_attempts)


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
        ASSET_JOB,
        partition_key(tenant.slug, product.key),
        {"ops": ops} if ops else {},
        run_tags(order, line, saved),
        launch_key,
        assets,
    )


def launch_batch(
    client: DagsterClient, tenant: Tenant, order: Order, output_type: OutputType, products: list[Product]
) -> str:
    """Launch order lines of one output type as one backfill of its step over their products (a
    step that renders many products in one run, ``workflows.Step.batch``): the daemon makes a run
    per range of consecutive products, each in one warm process. The backfill id; each line learns
    its run from the ``order_lines`` sensor. Idempotent per submission, like ``launch_line``."""
    submitted = order.submitted_at.timestamp()
    return client.backfill(
        [output_type.step],
        [partition_key(tenant.slug, product.key) for product in products],
        {"ops": {output_type.step: {"config": {"output_types": [output_type.name]}}}},
        f"{order.number}: {len(products)} × {output_type.name}",
        run_tags(order),
        f"batch:{order.id}:{output_type.name}@{submitted:.6f}",
        since=submitted - 1,
    )


def batches(lines: list[OrderLine], types: dict[str, OutputType]) -> list[list[OrderLine]]:
    """The lines launched together: per output type whose step runs in batches, when there are
    several; every other line alone."""
    grouped: dict[str, list[OrderLine]] = {}
    for line in lines:
        kind = types.get(line.output_type)
        key = line.output_type if kind and workflows.steps()[kind.step].batch else f"line:{line.id}"
        grouped.setdefault(key, []).append(line)
    return list(grouped.values())


def launch_lines(tx: Session, client: DagsterClient, order: Order, types: dict[str, OutputType] | None = None) -> int:
    """Launch the order's unlaunched lines that are due (``due``): alone, or, without a workflow,
    in batches (``batches``, ``launch_batch``). A line Dagster accepts is queued;
    one that can never launch (its output type or workflow is gone) fails with the reason at once,
    one whose launch fails while Dagster answers waits its backoff and fails after ``MAX_ATTEMPTS``,
    and the others go on; while Dagster does not answer, the rest stay pending, as they do while the
    tenant is deactivated (``TENANT_INACTIVE``). Returns how many launched. ``types``: the tenant's
    output types by name, where the caller has them."""
    tenant = tx.get(Tenant, order.tenant_id)
    now = tx.scalar(select(func.now()))
    pending = [
        line
        for line in tx.scalars(
            select(OrderLine).where(OrderLine.order_id == order.id, OrderLine.state == "pending").order_by(OrderLine.id)
        )
        if due(line, now)
    ]
    if not tenant.active:
        for line in pending:
            line.launch_error = TENANT_INACTIVE
        return 0
    types = types or {t.name: t for t in repository.output_types_of(tx, order.tenant_id)}
    try:
        workflow = compiled(tx, order) if order.workflow else None  # once per order, not per line
    except (NotFound, workflows.WorkflowError) as error:
        for line in pending:
            _refused(line, f"workflow {order.workflow!r} cannot run: {error}")
        return 0
    launched = 0
    ids = [line.product_id for line in pending]  # one read for every line's product, not one a line
    products_by_id = {p.id: p for p in tx.scalars(select(Product).where(Product.id.in_(ids)))} if ids else {}
    for group in [[line] for line in pending] if workflow else batches(pending, types):
        if group[0].output_type not in types:
            _refused(group[0], f"output type {group[0].output_type!r} no longer exists")
            continue
        output_type = types[group[0].output_type]
        products = [products_by_id[line.product_id] for line in group]
        try:
            if len(group) > 1:
                batch_id = launch_batch(client, tenant, order, output_type, products)
                for line in group:
                    line.batch_id = batch_id
            else:
                group[0].run_id = launch_line(client, tenant, products[0], output_type, order, group[0], workflow)
        except DagsterUnavailable as error:
            if not isinstance(error, DagsterRefused) and not client.healthy():
                for line in group:
                    line.launch_error = _storable(str(error))
                break  # the webserver is down: the rest wait for it, not counted against them
            for line in group:
                _launch_failed(line, error, now)
            continue
        for line in group:
            line.state, line.launch_error = "queued", None
        launched += len(group)
    return launched


def _launch_failed(line: OrderLine, error: DagsterUnavailable, now: datetime) -> None:
    """One more failed launch of ``line``, while Dagster answers: it waits its backoff, or fails."""
    line.launch_error = _storable(str(error))
    line.launch_attempts += 1
    line.launch_attempted_at = now
    if line.launch_attempts >= MAX_ATTEMPTS:
        _refused(line, f"{line.launch_attempts} launches failed, the last: {error}")


def _refused(line: OrderLine, reason: str) -> None:
    line.state, line.error_class, line.reason = "failed", "launch_refused", _storable(reason)


def _storable(text: str) -> str:
    """Dagster's words as a line keeps them: at most 2,000 characters, no NUL (PostgreSQL text has none)."""
    return text.replace("\x00", "\\0")[:2000]


def hold_lines(tx: Session, tenant_id: int, held: bool) -> None:
    """Say on each of the tenant's submitted, unlaunched lines that it waits for the tenant's
    reactivation (``held``), or take that back: the launch loop, which leaves a deactivated
    tenant's orders alone (``automat_pending_orders``), launches them again."""
    submitted = select(Order.id).where(Order.tenant_id == tenant_id, Order.status == "submitted")
    lines = (
        update(OrderLine)
        .where(OrderLine.tenant_id == tenant_id, OrderLine.state == "pending", OrderLine.order_id.in_(submitted))
        .execution_options(synchronize_session=False)
    )
    if held:
        tx.execute(lines.values(launch_error=TENANT_INACTIVE))
    else:
        tx.execute(lines.where(OrderLine.launch_error == TENANT_INACTIVE).values(launch_error=None))


def launch_workflow(
    client: DagsterClient,
    tenant: Tenant,
    saved: workflows.Saved,
    plan: workflows.Plan,
    partitions: list[str],
    started: float,
) -> dict[str, str]:
    """One run of the workflow per partition; partition → run id. A refusal names how many launched."""
    if not tenant.active:
        raise Conflict(f"tenant {tenant.slug!r} is deactivated: nothing launches for it")
    runs: dict[str, str] = {}
    try:
        for key in partitions:
            launch_key = f"workflow:{tenant.id}:{saved.name}:{saved.revision}:{key}@{started:.6f}"
            runs[key] = client.launch(
                ASSET_JOB, key, plan.run_config, run_tags(workflow=saved), launch_key, plan.selection
            )
    except DagsterUnavailable as error:
        raise DagsterUnavailable(f"{len(runs)} of {len(partitions)} launched: {error}") from error
    return runs


def launch_remake(
    client: DagsterClient, tenant: Tenant, products: list[Product], made: dict[str, set[str]], why: str
) -> tuple[str, list[str]]:
    """One backfill that re-makes the products' GLBs and whatever was made from them (``made``: step →
    output types, as ``repository.made_for`` finds them): the backfill id and its steps. Each render
    step makes the output types made for any of these products."""
    conversion = {"glb_production"} | workflows.steps()["glb_production"].made_with
    steps = sorted(conversion | (set(made) & workflows.downstream("glb_production")))
    ops = {step: {"config": {"output_types": sorted(made[step])}} for step in steps if step in PARAMETERS}
    keys = [partition_key(tenant.slug, product.key) for product in products]
    title = f"{why}: {len(products)} products of {tenant.slug}"
    return client.backfill(steps, keys, {"ops": ops} if ops else {}, title), steps


def launch_checks(tx: Session, client: DagsterClient, tenant: Tenant) -> int:
    """Launch the tenant's template checks not launched yet (job ``check_template`` on its tenant
    partition). One Dagster refused ``MAX_ATTEMPTS`` times is refused with the reason; while Dagster
    does not answer, the rest keep waiting. Returns how many launched."""
    launched = 0
    for version in tx.scalars(
        select(RenderTemplate)
        .where(
            RenderTemplate.tenant_id == tenant.id, RenderTemplate.status == "checking", RenderTemplate.run_id.is_(None)
        )
        .order_by(RenderTemplate.id)
        .with_for_update(skip_locked=True)  # another worker launching it already
    ):
        config = {"ops": {templates.CHECK_STEP: {"config": {"name": version.name, "sha256": version.sha256}}}}
        try:
            version.run_id = client.launch(templates.CHECK_JOB, tenant.slug, config, {}, f"template:{version.id}")
            version.launch_error = None
            launched += 1
        except DagsterRefused as error:
            version.launch_attempts += 1
            version.launch_error = str(error)[:2000]
            if version.launch_attempts >= MAX_ATTEMPTS:
                version.status, version.error_class = "refused", "launch_refused"
                version.reason = f"Dagster refused the check {version.launch_attempts} times: {error}"[:2000]
        except DagsterUnavailable as error:
            version.launch_error = str(error)[:2000]
            break  # the webserver is down: the loop tries again
    return launched


def pending_orders(database_url: str) -> list[tuple[int, int]]:
    """Submitted orders with a line not launched yet, of every active tenant (the loop runs for
    all): ``(order id, tenant id)``, through the database's one function that may see them all."""
    with scoped_session(database_url, None) as s:
        return [tuple(row) for row in s.execute(text("SELECT order_id, tenant_id FROM automat_pending_orders()"))]


def launch_pending(database_url: str, client: DagsterClient) -> int:
    """Launch every submitted line that is still waiting (the webserver was down at submission, or
    its backoff is over), each order in its own tenant's transaction. An order another transaction
    holds (a submission launching it) is skipped, not waited for; one that fails is logged and the
    others go on; the pass ends when Dagster or the database stops answering."""
    launched = 0
    for order_id, tenant_id in pending_orders(database_url):
        if not client.healthy():
            break
        try:
            with scoped_session(database_url, tenant_id) as s:
                order = s.scalar(select(Order).where(Order.id == order_id).with_for_update(skip_locked=True))
                if order is not None and order.status == "submitted":
                    launched += launch_lines(s, client, order)
                    events.lines_settled(s, OrderLine.order_id == order.id)  # launches refused for good
        except (OperationalError, InterfaceError):
            raise  # the database is away: the loop tries again
        except Exception:  # one order that cannot be launched must not hold up the others
            log.exception("launcher: order %s could not be launched", order_id)
    return launched


def launch_pending_checks(database_url: str, client: DagsterClient) -> int:
    """Launch every template check still waiting (the webserver was down at upload), each tenant's
    in its own transaction, through the database's one function that sees them all."""
    if not client.healthy():
        return 0
    with scoped_session(database_url, None) as s:
        waiting = sorted({row.tenant_id for row in s.execute(text("SELECT * FROM automat_pending_template_checks()"))})
    launched = 0
    for tenant_id in waiting:
        with scoped_session(database_url, tenant_id) as s:
            launched += launch_checks(s, client, s.get(Tenant, tenant_id))
    return launched


class LaunchLoop:
    """A thread that launches pending lines and template checks every ``INTERVAL_SECONDS`` until stopped."""

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
                launch_pending_checks(self.database_url, self.client)
            except SQLAlchemyError as error:  # the database is away: next time
                log.warning("launcher: %s", error)
            except Exception:  # one bad order must never end the loop for every other one
                log.exception("launcher: an order could not be launched; the loop goes on")
