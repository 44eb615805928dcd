"""Workflows against the real asset graph: precise errors, compilation, and random graphs."""

import json
import subprocess
import sys

import pytest
from conftest import fresh_home_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automat_pipeline import workflows
from automat_pipeline.workflows import WorkflowError, compile_workflow, default_workflow, steps, validate

PRODUCT_STEPS = [
    "blend_export",
    "cad_metadata",
    "glb_export",
    "glb_geometry",
    "glb_production",
    "step_file",
    "still",
    "thumbnail",
    "turntable",
]


def node(id, step, **params):
    return {"id": id, "step": step, "params": params}


def errors_of(document) -> list[str]:
    with pytest.raises(WorkflowError) as raised:
        validate(document)
    return raised.value.errors


def test_steps_are_the_asset_graph():
    assert sorted(steps()) == sorted([*PRODUCT_STEPS, "catalog_report", "product_catalog"])
    assert steps()["thumbnail"].upstream == {"glb_production"}
    assert steps()["cad_metadata"].made_with == {"glb_geometry", "glb_production"}
    catalog = {s["step"]: s for s in workflows.step_catalog()}
    described = catalog["still"]["parameters"]["properties"]["output_types"]
    assert described["description"].startswith("The output types to make, by name")
    assert catalog["glb_production"]["downstream"] == ["blend_export", "glb_export", "still", "thumbnail", "turntable"]
    assert catalog["thumbnail"]["parameters"] and catalog["glb_export"]["parameters"]  # they take parameters too


def test_default_workflow_is_the_whole_product_pipeline():
    plan = compile_workflow(validate(default_workflow()))
    assert plan.selection == PRODUCT_STEPS and plan.run_config == {}


def test_params_become_run_config():
    plan = compile_workflow(validate({"version": 1, "nodes": [node("s", "still", output_types=["still-web"])]}))
    assert plan.selection == ["still"]
    assert plan.run_config == {"ops": {"still": {"config": {"output_types": ["still-web"]}}}}


@pytest.mark.parametrize(
    "document,expected",
    [
        ({"version": 1, "nodes": [node("a", "render_magic")]}, "node 'a': unknown step 'render_magic'"),
        ({"version": 1, "nodes": [node("a", "still"), node("a", "thumbnail")]}, "node 'a': duplicate id"),
        (
            {
                "version": 1,
                "nodes": [
                    node("s", "still"),
                    node("m", "cad_metadata"),
                    node("g", "glb_geometry"),
                    node("p", "glb_production"),
                ],
                "edges": [
                    {"from": "s", "to": "m"},
                    {"from": "m", "to": "g"},
                    {"from": "g", "to": "p"},
                    {"from": "p", "to": "s"},
                ],
            },
            "edge s→m: the asset graph has no edge still → cad_metadata",
        ),
        (
            {
                "version": 1,
                "nodes": [node("p", "glb_production"), node("t", "thumbnail")],
                "edges": [{"from": "p", "to": "t"}, {"from": "t", "to": "p"}],
            },
            "edge t→p: closes a cycle",
        ),
        ({"version": 1, "nodes": [node("s", "still", output_types="all")]}, "node 's': params.output_types: "),
        (
            {"version": 1, "nodes": [node("b", "blend_export", size=64)]},
            "node 'b': params.size: step 'blend_export' takes no parameters",
        ),
        (
            {"version": 1, "nodes": [node("g", "glb_geometry")]},
            "node 'g': step 'glb_geometry' is made together with cad_metadata, glb_production: add them",
        ),
        (
            {"version": 1, "nodes": [node("c", "product_catalog"), node("t", "thumbnail")]},
            "node 'c': step 'product_catalog' runs per tenant; the others per tenant|product",
        ),
        (
            {
                "version": 1,
                "nodes": [
                    node("f", "step_file"),
                    node("m", "cad_metadata"),
                    node("g", "glb_geometry"),
                    node("p", "glb_production"),
                ],
                "edges": [{"from": "m", "to": "g"}, {"from": "g", "to": "p"}],
            },
            "node 'm': its upstream step step_file is node 'f', but no edge f→m",
        ),
        (
            {"version": 1, "nodes": [node("t", "thumbnail")], "edges": [{"from": "t", "to": "x"}]},
            "edge t→x: no node 'x'",
        ),
        ({"version": 2, "nodes": [node("t", "thumbnail")]}, "version: 2 is not supported"),
    ],
)
def test_errors_name_their_node_or_edge(document, expected):
    assert any(e.startswith(expected) for e in errors_of(document)), errors_of(document)


NAMES = sorted(steps()) + ["render_magic"]
IDS = ["a", "b", "c", "d", "e", "f"]


@st.composite
def graphs(draw):
    nodes = draw(
        st.lists(
            st.builds(lambda i, s: {"id": i, "step": s, "params": {}}, st.sampled_from(IDS), st.sampled_from(NAMES)),
            min_size=1,
            max_size=6,
        )
    )
    edges = draw(
        st.lists(st.builds(lambda a, b: {"from": a, "to": b}, st.sampled_from(IDS), st.sampled_from(IDS)), max_size=8)
    )
    return {"version": 1, "nodes": nodes, "edges": edges}


def wired(document) -> dict:
    """Half the time, add the asset graph's own edges between the nodes, so valid graphs come up."""
    ids = {n["step"]: n["id"] for n in document["nodes"]}
    extra = [
        {"from": ids[up], "to": n["id"]}
        for n in document["nodes"]
        if n["step"] in steps()
        for up in steps()[n["step"]].upstream
        if up in ids
    ]
    return {**document, "edges": document["edges"] + extra}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.booleans())
def test_random_graphs_compile_to_their_lineage_or_name_the_culprit(document, wire):
    document = wired(document) if wire else document
    try:
        workflow = validate(document)
    except WorkflowError as error:
        ids = {n["id"] for n in document["nodes"]}
        edges = {f"edge {e['from']}→{e['to']}" for e in document["edges"]}
        for message in error.errors:
            assert any(message.startswith(f"node {i!r}:") for i in ids) or any(
                message.startswith(f"{e}:") for e in edges
            ), message
        return
    plan = compile_workflow(workflow)
    by_id = {n.id: n.step for n in workflow.nodes}
    assert plan.selection == sorted(by_id.values())
    graph_edges = {(by_id[e.source], by_id[e.target]) for e in workflow.edges}
    lineage = {(up, s) for s in plan.selection for up in steps()[s].upstream if up in plan.selection}
    assert graph_edges == lineage


def test_cli_validate_and_plan(tmp_path):
    env = fresh_home_env(tmp_path / "home")

    def automat(*args):
        return subprocess.run(
            [sys.executable, "-m", "automat_pipeline.cli", *args], capture_output=True, text=True, env=env
        )

    (tmp_path / "full.json").write_text(json.dumps(default_workflow()))
    (tmp_path / "still.json").write_text(json.dumps({"version": 1, "nodes": [node("s", "still")]}))
    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "nodes": [node("s", "still"), node("s", "x")]}))
    assert json.loads(automat("workflow", "validate", str(tmp_path / "full.json"), "--json").stdout)["valid"]
    bad = automat("workflow", "validate", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and bad.stderr == "error: invalid_workflow: node 's': duplicate id\n"
    planned = automat("workflow", "plan", str(tmp_path / "full.json"), "--partition", "acme|P-1", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout) == {"partition": "acme|P-1", "selection": PRODUCT_STEPS, "run_config": {}}
    unready = automat("workflow", "plan", str(tmp_path / "still.json"), "--partition", "acme|P-1", "--json")
    assert unready.returncode == 2
    assert json.loads(unready.stdout)["errors"] == [
        "node 's': needs glb_production, which is neither in the workflow nor materialized for the partition"
    ]
