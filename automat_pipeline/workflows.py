"""Workflows: the operators' graphs of named steps, checked against the asset graph and compiled to
an asset selection plus run config.

A step is an asset: its name is the asset key (the same name the log prefixes, the API and the
asset graph use), its upstream and downstream steps are the asset graph's, and its parameters
are the asset's run config (``PARAMETERS``), with the help texts of their fields. A workflow is
versioned JSON::

    {"version": 1, "nodes": [{"id": "t", "step": "thumbnail", "params": {}}], "edges": [{"from": "p", "to": "t"}]}

Every error names the node or edge it is about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automat_pipeline.step_params import PARAMETERS

VERSION = 1
STEP_GRAPH = Path(__file__).with_name("step_graph.json")  # written from the definitions: defs/step_graph.py


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, description="Unique in the workflow.")
    step: str = Field(min_length=1, max_length=64, description="A step name (GET /workflows/steps).")
    params: dict = Field(default_factory=dict, description="The step's parameters (its schema).")


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from", description="The upstream node's id.")
    target: str = Field(alias="to", description="The downstream node's id.")


class Workflow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(description=f"Format version; {VERSION}.")
    nodes: list[Node] = Field(min_length=1, max_length=100, description="The steps to run.")
    edges: list[Edge] = Field(default_factory=list, max_length=1000, description="Upstream → downstream.")


@dataclass(frozen=True)
class Step:
    name: str
    partitions: str  # "tenants" or "products"
    upstream: frozenset[str]
    made_with: frozenset[str]  # steps one computation makes together (the STEP conversion)
    batch: bool  # many products in one run (a backfill's range of partitions), in one warm process


@dataclass(frozen=True)
class Saved:
    """A tenant's workflow as stored (``revision`` counts its saves; 0 for the built-in default)."""

    name: str
    revision: int
    document: dict


DEFAULT = "default"  # every tenant's built-in workflow: the full product pipeline


@dataclass(frozen=True)
class Plan:
    selection: list[str]  # asset keys
    run_config: dict


class WorkflowError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@cache
def steps() -> dict[str, Step]:
    """Every step, as the code location's asset graph defines it (``step_graph.json``)."""
    described = json.loads(STEP_GRAPH.read_text())["steps"]
    return {
        name: Step(name, s["partitions"], frozenset(s["upstream"]), frozenset(s["made_with"]), s["batch"])
        for name, s in described.items()
    }


def step_catalog() -> list[dict]:
    """The steps as the API lists them: parameters with their schema and help, neighbours."""
    downstream = {name: sorted(n for n, s in steps().items() if name in s.upstream) for name in steps()}
    return [
        {
            "step": s.name,
            "partitions": s.partitions,
            "upstream": sorted(s.upstream),
            "downstream": downstream[s.name],
            "made_with": sorted(s.made_with),
            "batch": s.batch,
            "parameters": PARAMETERS[s.name].model_json_schema() if s.name in PARAMETERS else None,
        }
        for s in sorted(steps().values(), key=lambda s: s.name)
    ]


def validate(document: dict) -> Workflow:
    """The workflow, or WorkflowError listing every problem, each naming its node or edge."""
    try:
        workflow = Workflow.model_validate(document)
    except ValidationError as error:
        raise WorkflowError([f"{_where(e['loc'], document)}: {e['msg']}" for e in error.errors()]) from error
    errors = []
    if workflow.version != VERSION:
        errors.append(f"version: {workflow.version} is not supported (only {VERSION})")
    known, by_id = steps(), {}
    for node in workflow.nodes:
        if node.id in by_id:
            errors.append(f"node {node.id!r}: duplicate id")
            continue
        by_id[node.id] = node
        if node.step not in known:
            errors.append(f"node {node.id!r}: unknown step {node.step!r}")
            continue
        errors += [f"node {node.id!r}: params.{p}" for p in _param_problems(node)]
    nodes_by_step: dict[str, list[Node]] = {}
    for node in by_id.values():
        nodes_by_step.setdefault(node.step, []).append(node)
    errors += [
        f"node {ns[1].id!r}: step {step!r} is already node {ns[0].id!r}"
        for step, ns in nodes_by_step.items()
        if len(ns) > 1
    ]
    valid_nodes = {i: n for i, n in by_id.items() if n.step in known}
    partitions = {known[n.step].partitions for n in valid_nodes.values()}
    if len(partitions) > 1:
        errors += [
            f"node {n.id!r}: step {n.step!r} runs per tenant; the others per tenant|product"
            for n in valid_nodes.values()
            if known[n.step].partitions == "tenants"
        ]
    for node in valid_nodes.values():
        missing = sorted(known[node.step].made_with - set(nodes_by_step))
        if missing:
            errors.append(f"node {node.id!r}: step {node.step!r} is made together with {', '.join(missing)}: add them")
    edges = set()
    for edge in workflow.edges:
        name = f"edge {edge.source}→{edge.target}"
        absent = [i for i in (edge.source, edge.target) if i not in by_id]
        if absent:
            errors.append(f"{name}: no node {absent[0]!r}")
        elif edge.source in valid_nodes and edge.target in valid_nodes:
            source, target = valid_nodes[edge.source].step, valid_nodes[edge.target].step
            if source not in known[target].upstream:
                errors.append(f"{name}: the asset graph has no edge {source} → {target}")
            else:
                edges.add((edge.source, edge.target))
    errors += _cycles(workflow)
    for node in valid_nodes.values():  # lineage: an upstream step in the workflow must be wired to it
        for upstream in sorted(known[node.step].upstream & set(nodes_by_step)):
            for other in nodes_by_step[upstream]:
                if (other.id, node.id) not in edges:
                    errors.append(
                        f"node {node.id!r}: its upstream step {upstream} is node {other.id!r}, "
                        f"but no edge {other.id}→{node.id}"
                    )
    if errors:
        raise WorkflowError(errors)
    return workflow


def compile_workflow(workflow: Workflow) -> Plan:
    """The asset selection of exactly the workflow's steps, and the run config of their parameters."""
    ops = {
        n.step: {"config": PARAMETERS[n.step](**n.params).model_dump()}
        for n in workflow.nodes
        if n.step in PARAMETERS and n.params
    }
    return Plan(selection=sorted(n.step for n in workflow.nodes), run_config={"ops": ops} if ops else {})


def missing_upstream(workflow: Workflow, materialized: set[str]) -> list[str]:
    """Errors for nodes whose upstream step is neither in the workflow nor ``materialized``."""
    present = {n.step for n in workflow.nodes}
    return [
        f"node {n.id!r}: needs {up}, which is neither in the workflow nor materialized for the partition"
        for n in workflow.nodes
        for up in sorted(steps()[n.step].upstream - present - materialized)
    ]


def upstream_steps(workflow: Workflow) -> list[str]:
    """The steps (asset keys) outside the workflow that its steps read."""
    present = {n.step for n in workflow.nodes}
    return sorted({u for n in workflow.nodes for u in steps()[n.step].upstream} - present)


def downstream(step: str) -> set[str]:
    """Every step made, directly or not, from ``step``."""
    found, todo = set(), [step]
    while todo:
        current = todo.pop()
        for name, candidate in steps().items():
            if current in candidate.upstream and name not in found:
                found.add(name)
                todo.append(name)
    return found - steps()[step].made_with


def default_workflow() -> dict:
    """The full product pipeline: every per-product step, wired as the asset graph is."""
    product_steps = sorted(s.name for s in steps().values() if s.partitions == "products")
    return {
        "version": VERSION,
        "nodes": [{"id": s, "step": s, "params": {}} for s in product_steps],
        "edges": [{"from": up, "to": s} for s in product_steps for up in sorted(steps()[s].upstream)],
    }


def _param_problems(node: Node) -> list[str]:
    if node.step not in PARAMETERS:
        return [f"{k}: step {node.step!r} takes no parameters" for k in node.params]
    schema = PARAMETERS[node.step]
    unknown = [
        f"{k}: unknown parameter (known: {', '.join(schema.model_fields)})"
        for k in node.params
        if k not in schema.model_fields
    ]
    if unknown:
        return unknown
    try:
        schema(**node.params)
    except ValidationError as error:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    return []


def _cycles(workflow: Workflow) -> list[str]:
    """One error per edge that closes a cycle (depth-first search)."""
    children: dict[str, list[str]] = {}
    for edge in workflow.edges:
        children.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    errors = []

    def visit(node: str) -> None:
        state[node] = 1
        for child in children.get(node, []):
            if state.get(child) == 1:
                errors.append(f"edge {node}→{child}: closes a cycle")
            elif child not in state:
                visit(child)
        state[node] = 2

    for node in list(children):
        if node not in state:
            visit(node)
    return errors


def _where(loc: tuple, document: dict) -> str:
    """A pydantic error location as the node or edge it is about."""
    if len(loc) >= 2 and loc[0] in ("nodes", "edges") and isinstance(loc[1], int):
        items = document.get(loc[0]) or []
        item = items[loc[1]] if loc[1] < len(items) and isinstance(items[loc[1]], dict) else {}
        name = (
            f"node {item.get('id')!r}"
            if loc[0] == "nodes" and item.get("id") is not None
            else f"edge {item.get('from')}→{item.get('to')}"
            if loc[0] == "edges"
            else f"{loc[0]}[{loc[1]}]"
        )
        return ".".join([name, *map(str, loc[2:])])
    return ".".join(map(str, loc))
