"""The workflow steps as the asset graph defines them, written to ``automat_pipeline/step_graph.json``.

The API validates workflows against that file instead of building the definitions (which import
OpenCascade and trimesh) in every worker. ``tests/test_workflows.py`` fails when it is stale;
``python -m automat_pipeline.defs.step_graph`` writes it anew.
"""

import json

from automat_pipeline.definitions import defs
from automat_pipeline.workflows import STEP_GRAPH


def describe() -> dict:
    """Every asset: its partitions, upstream assets, the assets one computation makes with it, and
    whether a backfill runs many of its partitions in one run (``BackfillPolicy.single_run``)."""
    graph = defs.resolve_asset_graph()
    steps = {}
    for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string()):
        name = node.key.to_user_string()
        steps[name] = {
            "partitions": node.partitions_def.name,
            "upstream": sorted(k.to_user_string() for k in node.parent_keys),
            "made_with": sorted(k.to_user_string() for k in node.execution_set_asset_keys if k != node.key),
            "batch": node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run is None,
        }
    return {"steps": steps}


def write() -> None:
    STEP_GRAPH.write_text(json.dumps(describe(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
