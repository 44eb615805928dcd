"""The API's launch loop under launches that fail: a refused line waits a growing backoff and then
fails with the reason; neither a line nor an order that cannot launch holds up the others. An
order's thumbnail lines launch as one backfill, found again when its answer was lost, and
stopping some of them leaves a run other lines still need alone.

Dagster's answers come from a GraphQL endpoint on loopback that answers as the webserver does
(``dagster_client``'s queries), refusing the lines a test names; that the real webserver launches
pending lines exactly once after an API restart: tests/test_faults.py."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import login
from sqlalchemy import text

from automat_pipeline.api.dagster_client import DagsterClient
from automat_pipeline.api.launcher import MAX_ATTEMPTS, backoff, launch_pending
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import Order, Product, ProductFile
from automat_pipeline.embedded import api_url


class DagsterAnswers(ThreadingHTTPServer):
    """Dagster's GraphQL endpoint as the launcher meets it: launches succeed, except those of the
    order lines in ``refuse`` (a ``PythonError`` with that message) and ``fail`` (HTTP 500); every
    launch attempt is counted per line."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Answer)
        self.refuse: dict[int, str] = {}
        self.fail: set[int] = set()
        self.attempts: dict[int, int] = {}
        self.launched: dict[str, str] = {}  # launch key → run id
        self.backfills: list[dict] = []  # the backfills launched: their parameters, id and tags
        self.lose_backfill_answers = 0  # backfills made whose answer is lost (HTTP 500)
        self.terminated: list[str] = []
        self.cancelled_backfills: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/graphql"


class Answer(BaseHTTPRequestHandler):
    server: DagsterAnswers

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        query, variables = body["query"], body.get("variables", {})
        if "launchRun" in query:
            found = self.launch(variables["params"])
        elif "launchPartitionBackfill" in query:
            found = self.backfill(variables["params"])
        elif "partitionBackfillsOrError" in query:
            made = [{"id": b["id"], "tags": b["params"].get("tags", [])} for b in self.server.backfills]
            found = {"partitionBackfillsOrError": {"results": made}}
        elif "cancelPartitionBackfill" in query:
            self.server.cancelled_backfills.append(variables["id"])
            found = {"cancelPartitionBackfill": {"__typename": "CancelBackfillSuccess"}}
        elif "terminateRuns" in query:
            self.server.terminated += variables["ids"]
            found = {"terminateRuns": {"__typename": "TerminateRunsResult"}}
        elif "addDynamicPartition" in query:
            found = {"addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"}}
        elif "runsOrError" in query:
            run = self.server.launched.get(variables.get("value"))
            found = {"runsOrError": {"results": [{"runId": run}] if run else []}}
        else:
            found = {"version": "1.13"}
        if found is None:
            self.send_response(500)
            self.end_headers()
            return
        answer = json.dumps({"data": found}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def launch(self, params: dict) -> dict | None:
        tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
        line = int(tags["automat/order-line"])
        self.server.attempts[line] = self.server.attempts.get(line, 0) + 1
        if line in self.server.fail:
            return None
        if line in self.server.refuse:
            return {"launchRun": {"__typename": "PythonError", "message": self.server.refuse[line]}}
        run_id = f"run-{line}-{self.server.attempts[line]}"
        self.server.launched[tags["automat/launch-key"]] = run_id
        return {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": run_id}}}

    def backfill(self, params: dict) -> dict | None:
        backfill_id = f"bf-{len(self.server.backfills) + 1}"
        self.server.backfills.append({"id": backfill_id, "params": params})
        if self.server.lose_backfill_answers:
            self.server.lose_backfill_answers -= 1
            return None
        return {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": backfill_id}}


@pytest.fixture
def dagster():
    answers = DagsterAnswers()
    yield answers
    answers.shutdown()


def submitted(api, world, headers, *output_types: str) -> dict:
    order = api.post("/orders", headers=headers).json()
    for output_type in output_types:
        line = {"product_id": world["products"]["6204-2RS"], "output_type": output_type}
        order = api.post(f"/orders/{order['id']}/lines", headers=headers, json=line).json()
    return api.post(f"/orders/{order['id']}/submit", headers=headers).json()


def lines(api, headers, order: dict) -> dict[int, dict]:
    return {line["id"]: line for line in api.get(f"/orders/{order['id']}", headers=headers).json()["lines"]}


def age_last_attempt(env, line_id: int, by: timedelta) -> None:
    """Move the line's last failed launch ``by`` into the past, as if that much time went by."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.execute(
            text("UPDATE order_lines SET launch_attempted_at = launch_attempted_at - :by WHERE id = :l"),
            {"by": by, "l": line_id},
        )


def test_a_refused_line_waits_a_growing_backoff_then_fails_with_the_reason(api, world, env, dagster):
    client = login(api, "client@acme.example")
    api.app.state.dagster = DagsterClient(dagster.url)
    order = api.post("/orders", headers=client).json()
    order = api.post(
        f"/orders/{order['id']}/lines",
        headers=client,
        json={"product_id": world["products"]["6204-2RS"], "output_type": "still-web"},
    ).json()
    [line_id] = [line["id"] for line in order["lines"]]
    dagster.refuse[line_id] = "RunConfigValidationInvalid: the code location changed"
    api.post(f"/orders/{order['id']}/submit", headers=client)
    loop_url = api_url(env["AUTOMAT_DATABASE_URL"])
    for attempt in range(1, MAX_ATTEMPTS):
        line = lines(api, client, order)[line_id]
        assert (line["state"], dagster.attempts[line_id]) == ("pending", attempt)
        assert "code location changed" in line["launch_error"]
        launch_pending(loop_url, DagsterClient(dagster.url))  # the next pass, 5 s later: still waiting
        assert dagster.attempts[line_id] == attempt
        age_last_attempt(env, line_id, backoff(attempt) - timedelta(seconds=2))
        launch_pending(loop_url, DagsterClient(dagster.url))
        assert dagster.attempts[line_id] == attempt, "tried again before its backoff was over"
        age_last_attempt(env, line_id, timedelta(seconds=2))
        launch_pending(loop_url, DagsterClient(dagster.url))
    line = lines(api, client, order)[line_id]
    assert (line["state"], line["error_class"], dagster.attempts[line_id]) == ("failed", "launch_refused", MAX_ATTEMPTS)
    assert f"{MAX_ATTEMPTS} launches failed" in line["reason"] and "code location changed" in line["reason"]
    assert [backoff(n).total_seconds() for n in range(1, MAX_ATTEMPTS)] == [10, 20, 40, 80]
    api.post(f"/orders/{order['id']}/cancel", headers=client)
    api.post(f"/orders/{order['id']}/resubmit", headers=client)
    api.post(f"/orders/{order['id']}/submit", headers=client)  # refused again: a fresh start, not a failure
    line = lines(api, client, order)[line_id]
    assert (line["state"], dagster.attempts[line_id]) == ("pending", MAX_ATTEMPTS + 1)


def test_a_line_that_fails_alone_does_not_hold_up_the_others_of_its_order(api, world, env, dagster):
    client = login(api, "client@acme.example")
    api.app.state.dagster = DagsterClient(dagster.url)
    order = api.post("/orders", headers=client).json()
    for output_type in ("thumbnail", "still-web", "turntable-web"):
        line = {"product_id": world["products"]["6204-2RS"], "output_type": output_type}
        order = api.post(f"/orders/{order['id']}/lines", headers=client, json=line).json()
    first = order["lines"][0]["id"]
    dagster.fail.add(first)  # the webserver answers, but this launch fails every time
    api.post(f"/orders/{order['id']}/submit", headers=client)
    states = {line_id: line["state"] for line_id, line in lines(api, client, order).items()}
    assert states == {first: "pending", **{line["id"]: "queued" for line in order["lines"][1:]}}
    assert lines(api, client, order)[first]["launch_error"]


def test_an_order_whose_refusal_cannot_be_stored_does_not_hold_up_the_others(api, world, env, dagster):
    client = login(api, "client@acme.example")
    poisoned, fine = (submitted(api, world, client, "thumbnail") for _ in range(2))  # Dagster is down: pending
    assert {o["lines"][0]["state"] for o in (poisoned, fine)} == {"pending"}
    dagster.refuse[poisoned["lines"][0]["id"]] = "InvalidSubsetError: no asset \x00named so"  # NUL: not storable
    launch_pending(api_url(env["AUTOMAT_DATABASE_URL"]), DagsterClient(dagster.url))
    assert lines(api, client, fine)[fine["lines"][0]["id"]]["state"] == "queued"
    refused = lines(api, client, poisoned)[poisoned["lines"][0]["id"]]
    assert refused["state"] == "pending" and "no asset \\0named so" in refused["launch_error"]


def test_the_loop_skips_an_order_another_transaction_holds(api, world, env, dagster):
    client = login(api, "client@acme.example")
    held, fine = (submitted(api, world, client, "thumbnail") for _ in range(2))  # Dagster is down: pending
    loop_url = api_url(env["AUTOMAT_DATABASE_URL"])
    with session(env["AUTOMAT_DATABASE_URL"]) as other, other.begin():  # a request holds the first order
        other.get(Order, held["id"], with_for_update=True)
        passing = threading.Thread(target=launch_pending, args=(loop_url, DagsterClient(dagster.url)), daemon=True)
        passing.start()
        passing.join(60)
        assert not passing.is_alive(), "the launch loop waits for an order another transaction holds"
    assert lines(api, client, fine)[fine["lines"][0]["id"]]["state"] == "queued"
    launch_pending(loop_url, DagsterClient(dagster.url))  # the held order's turn, once it is free
    assert lines(api, client, held)[held["lines"][0]["id"]]["state"] == "queued"
    assert sorted(dagster.attempts.values()) == [1, 1]  # each launched once


def screws(env, world, count: int) -> list[int]:
    """``count`` more acme products with a converted STEP file each: their ids."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = world["tenants"]["acme"]
        made = [
            Product(tenant_id=tenant, pim_id=f"S-{n}", key=f"S-{n}", name=f"Screw {n}", materials={}, attributes={})
            for n in range(count)
        ]
        s.add_all(made)
        s.flush()
        for product in made:
            s.add(
                ProductFile(
                    tenant_id=tenant,
                    product_id=product.id,
                    filename=f"{product.key}.stp",
                    kind="step",
                    sha256="0" * 64,
                    size_bytes=1,
                    status="ok",
                )
            )
        return [p.id for p in made]


def ordered(api, headers, lines: list[tuple[int, str]]) -> dict:
    order = api.post("/orders", headers=headers).json()
    for product_id, output_type in lines:
        line = {"product_id": product_id, "output_type": output_type}
        order = api.post(f"/orders/{order['id']}/lines", headers=headers, json=line).json()
    return order


def test_an_orders_thumbnail_lines_launch_as_one_backfill_found_again_when_its_answer_was_lost(
    api, world, env, dagster
):
    client = login(api, "client@acme.example")
    api.app.state.dagster = DagsterClient(dagster.url)
    products = screws(env, world, 3)
    order = ordered(api, client, [(p, "thumbnail") for p in products] + [(products[0], "still-web")])
    dagster.lose_backfill_answers = 1  # Dagster makes it, but its answer never arrives
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client).json()
    thumbnails = [line["id"] for line in submitted["lines"] if line["output_type"] == "thumbnail"]
    states = {line["id"]: (line["state"], line["run_id"]) for line in submitted["lines"]}
    assert [states[line] for line in thumbnails] == [("pending", None)] * 3  # waits its backoff
    [still] = [line for line in submitted["lines"] if line["output_type"] == "still-web"]
    assert (still["state"], still["run_id"]) == ("queued", f"run-{still['id']}-1")  # a still renders alone
    for line in thumbnails:
        age_last_attempt(env, line, backoff(1))
    launch_pending(api_url(env["AUTOMAT_DATABASE_URL"]), DagsterClient(dagster.url))
    [backfill] = dagster.backfills  # found by its launch key, not made again
    params = backfill["params"]
    assert sorted(params["partitionNames"]) == sorted(f"acme|S-{n}" for n in range(3))
    assert params["assetSelection"] == [{"path": ["thumbnail"]}]
    assert params["runConfigData"] == {"ops": {"thumbnail": {"config": {"output_types": ["thumbnail"]}}}}
    assert {"key": "automat/order", "value": str(order["id"])} in params["tags"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        waiting = s.execute(
            text("SELECT state, batch_id, run_id FROM order_lines WHERE id = ANY(:ids)"), {"ids": thumbnails}
        )
        assert set(waiting) == {("queued", "bf-1", None)}
    assert dagster.attempts == {still["id"]: 1}


def test_stopping_lines_of_a_batch_leaves_a_run_other_lines_need_alone(api, world, env, dagster):
    client = login(api, "client@acme.example")
    api.app.state.dagster = DagsterClient(dagster.url)
    products = screws(env, world, 3)
    order = api.post(
        f"/orders/{ordered(api, client, [(p, 'thumbnail') for p in products])['id']}/submit", headers=client
    ).json()
    first, second, third = (line["id"] for line in order["lines"])
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # the daemon's first run renders two of them
        assert repository.claim_batch_lines(s, "bf-1", "run-a", ["acme|S-0", "acme|S-1"]) == 2
    cancelled = api.post(f"/orders/{order['id']}/lines/{first}/cancel", headers=client).json()
    assert dagster.terminated == [] and dagster.cancelled_backfills == []  # the run renders the second too
    assert {line["id"]: line["state"] for line in cancelled["lines"]} == {
        first: "cancelled",
        second: "queued",
        third: "queued",
    }
    cancelled = api.post(f"/orders/{order['id']}/cancel", headers=client).json()
    assert (dagster.terminated, dagster.cancelled_backfills) == (["run-a"], ["bf-1"])
    states = {line["id"]: line["state"] for line in cancelled["lines"]}
    assert states == {first: "cancelled", second: "queued", third: "cancelled"}  # the second when its run ends
