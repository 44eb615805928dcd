"""A 500-line order through the real pipeline (``automat ui``: webserver, daemon, API): its
thumbnail lines are launched as one backfill, the daemon renders them in runs over ranges of
products, each line learns its run and outcome, and the board's counts equal the documents'."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES, fresh_home_env, wait_for
from openpyxl import Workbook
from test_ui import DONE, PASSWORD, graphql, http, start_ui

pytestmark = pytest.mark.slow

PRODUCTS = 500
RUNS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status runs(limit: 1000) { runId status tags { key value } } } } }"""


def catalogue(inbox: Path, count: int) -> None:
    """``count`` products, each naming its own copy of the screw's STEP file, dropped into the inbox
    (a file belongs to one product)."""
    workbook = Workbook()
    workbook.active.append(["PIM-ID", "Name", "CAD-Datei"])
    screw = (STEP_FIXTURES / "occt" / "screw.step").read_bytes()
    for n in range(count):
        workbook.active.append([f"SCREW-{n:04d}", f"Screw {n}", f"screw-{n:04d}.step"])
        (inbox / f"screw-{n:04d}.step").write_bytes(screw)
    workbook.save(inbox / "products.xlsx")


def test_a_500_line_order_renders_in_batch_runs_and_its_documents_and_board_agree(tmp_path: Path):
    env = fresh_home_env(tmp_path / "home")
    automat = str(Path(sys.executable).parent / "automat")
    for command in (
        [automat, "tenant", "create", "acme"],
        [automat, "user", "create", "--tenant", "acme", "--role", "project_manager", "--email", "pm@acme.example"],
    ):
        done = subprocess.run(command, env=env | {"AUTOMAT_USER_PASSWORD": PASSWORD}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    catalogue(tmp_path / "home" / "uploads" / "acme", PRODUCTS)
    ui, port, api = start_ui(automat, env)
    try:
        wait_for(
            "webserver and API", lambda: ui.poll() is None and (h := http("GET", f"{api}/health")) and h["dagster"]
        )
        login = {"email": "pm@acme.example", "password": PASSWORD}
        token = http("POST", f"{api}/auth/login", login)["access_token"]

        def products() -> list[dict] | None:
            items, cursor = [], ""
            while page := http("GET", f"{api}/media?asset=thumbnail&status=completed&limit=200{cursor}", token=token):
                items += page["items"]
                if not page["next_cursor"]:
                    break
                cursor = f"&cursor={page['next_cursor']}"
            return len(items) == PRODUCTS and items

        made = wait_for("every product's conversion and thumbnail", products, seconds=900, every=5)
        order = http("POST", f"{api}/orders", token=token)
        for product_id in sorted({m["product_id"] for m in made}):
            line = {"product_id": product_id, "output_type": "thumbnail"}
            http("POST", f"{api}/orders/{order['id']}/lines", line, token=token, strict=True)
        submitted = http("POST", f"{api}/orders/{order['id']}/submit", token=token, strict=True)
        assert submitted["counts"]["queued"] == PRODUCTS, submitted["counts"]
        assert {line["run_id"] for line in submitted["lines"]} == {None}  # each learns its run from the sensor

        def finished() -> dict | None:
            found = http("GET", f"{api}/orders/{order['id']}", token=token)
            return found and found["state"] in ("completed", "completed_with_failures", "failed") and found

        document = wait_for(
            "the order's lines", finished, seconds=900, every=5, show=lambda: finished() or "not finished"
        )
        assert document["state"] == "completed" and document["counts"]["succeeded"] == PRODUCTS, document["counts"]
        runs = {line["run_id"] for line in document["lines"]}
        assert None not in runs and len(runs) < 10, f"{len(runs)} runs for {PRODUCTS} lines"
        for line in document["lines"]:
            [output] = line["outputs"]  # its own product's thumbnail, not its run's others
            assert (output["asset"], output["output_type"], output["file"]) == (
                "thumbnail",
                "thumbnail",
                f"/media/{output['media_id']}/file",
            ), line
            assert line["state"] == "completed" and line["ended_at"] and line["error_class"] is None, line
        assert len({o["media_id"] for line in document["lines"] for o in line["outputs"]}) == PRODUCTS
        backfills = graphql(port, "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }")
        [backfill_id] = [  # the order's one backfill (the catalogue's media runs are the sensor's, not one)
            b["id"]
            for b in backfills["partitionBackfillsOrError"]["results"]
            if any(
                t["key"] == "automat/order"
                for r in graphql(port, RUNS, id=b["id"])["partitionBackfillOrError"]["runs"]
                for t in r["tags"]
            )
        ]
        backfill = wait_for(
            "the order's backfill to end",
            lambda: (b := graphql(port, RUNS, id=backfill_id)["partitionBackfillOrError"])["status"] in DONE and b,
        )
        assert {r["runId"] for r in backfill["runs"]} == runs, backfill
        board = http("GET", f"{api}/orders?status=submitted", token=token)
        [item] = board["items"]
        assert (item["state"], item["counts"]) == (document["state"], document["counts"])
        assert board["counts"]["submitted"] == 1, board["counts"]
    finally:
        ui.terminate()
        ui.wait(timeout=60)
