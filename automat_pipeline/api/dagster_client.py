"""Dagster, as the API sees it: its GraphQL endpoint on the webserver.

GraphQL rather than an in-process instance: launching needs the code location, which the
webserver already serves, and the API then needs neither the pipeline's imports nor its storage.
"""

from __future__ import annotations

import httpx

from automat_pipeline import tags
from automat_pipeline.keys import SEPARATOR

LOCATION = "automat"  # workspace.yaml and docker/workspace.yaml name it so
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
ASSET_JOB = "__ASSET_JOB"  # Dagster's job of every asset: a launch of it names its asset selection

LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""
ADD_PARTITION = """mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
  __typename ... on Error { message } } }"""
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""
BACKFILLS_SINCE = """query($since: Float!) { partitionBackfillsOrError(filters: {createdAfter: $since}, limit: 1000) {
  ... on PartitionBackfills { results { id tags { key value } } } } }"""
CANCEL_BACKFILL = """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) {
  __typename ... on Error { message } } }"""
TERMINATE = """mutation($ids: [String!]!) { terminateRuns(runIds: $ids) { __typename } }"""
RUN_WITH_TAG = """query($key: String!, $value: String!) { runsOrError(filter: {tags: [{key: $key, value: $value}]},
  limit: 1) { ... on Runs { results { runId } } } }"""
MATERIALIZED = """query($key: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $key) {
  ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { runId } } } }"""
TICK = "ticks(limit: 1) { id status timestamp error { message causes { message } } }"
PROBLEMS = f"""query($selector: RepositorySelector!) {{
  workspaceOrError {{ ... on Workspace {{ locationEntries {{ name
    locationOrLoadError {{ __typename ... on PythonError {{ message }} }} }} }} }}
  repositoryOrError(repositorySelector: $selector) {{ ... on Repository {{
    sensors {{ name sensorState {{ status {TICK} }} }}
    schedules {{ name scheduleState {{ status {TICK} }} }} }} }} }}"""
RUNS = """query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs { results {
  runId status stepStats { stepKey status startTime endTime } } } } }"""


TERMINATE_TIMEOUT_SECONDS = 60.0
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


class DagsterUnavailable(Exception):
    """The webserver did not answer, or answered with an error: worth trying again later."""


class DagsterRefused(DagsterUnavailable):
    """The webserver answered and refused the launch (an unknown asset, invalid run config): trying
    again will not help unless the code location changes."""


class DagsterClient:
    def __init__(self, graphql_url: str, timeout: float = 10.0):
        self.url = graphql_url
        self.http = httpx.Client(timeout=timeout)  # one client: a new one costs an SSL context (~40 ms CPU)

    def _query(self, query: str, timeout: float | None = None, **variables) -> dict:
        try:
            response = self.http.post(
                self.url, json={"query": query, "variables": variables}, timeout=timeout or self.http.timeout
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise DagsterUnavailable(f"{self.url}: {error}") from error
        if body.get("errors"):
            raise DagsterUnavailable(body["errors"][0].get("message", "GraphQL error"))
        return body["data"]

    def healthy(self) -> bool:
        try:
            self._query("{ version }")
            return True
        except DagsterUnavailable:
            return False

    def launch(
        self,
        job: str,
        partition: str,
        run_config: dict,
        run_tags: dict[str, str],
        launch_key: str,
        assets: list[str] | None = None,
    ) -> str:
        """Launch ``job`` (``ASSET_JOB`` with its ``assets``) for one partition, a tenant|product or a
        tenant (added first to its dynamic partitions, products or tenants, if new); the run id.

        Idempotent by ``launch_key``: a launch whose answer was lost (a timeout) is found by its
        tag instead of launched twice."""
        found = self._query(RUN_WITH_TAG, key=tags.LAUNCH_KEY, value=launch_key)["runsOrError"].get("results")
        if found:
            return found[0]["runId"]
        self.add_partition("products" if SEPARATOR in partition else "tenants", partition)
        params = {
            "selector": {
                **REPOSITORY,
                "jobName": job,
                **({"assetSelection": [{"path": [asset]} for asset in assets]} if assets is not None else {}),
            },
            "runConfigData": run_config,
            "executionMetadata": {
                "tags": [
                    {"key": k, "value": v}
                    for k, v in {**run_tags, tags.LAUNCH_KEY: launch_key, tags.PARTITION: partition}.items()
                ]
            },
        }
        launched = self._query(LAUNCH, params=params)["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise DagsterRefused(f"{launched['__typename']}: {launched.get('message', '')}".rstrip(": "))
        return launched["run"]["runId"]

    def backfill(
        self,
        assets: list[str],
        partitions: list[str],
        run_config: dict,
        title: str,
        run_tags: dict[str, str] | None = None,
        launch_key: str | None = None,
        since: float | None = None,
    ) -> str:
        """One backfill of ``assets`` over ``partitions`` (which exist): the daemon launches its runs,
        each with ``run_tags``, and the operator follows them as one. The backfill id.

        With a ``launch_key``, idempotent like ``launch``: a backfill with that key created after
        ``since`` (a timestamp: when its cause was, an order's submission) is found, not made twice."""
        if launch_key is not None:
            recent = self._query(BACKFILLS_SINCE, since=since or 0.0)["partitionBackfillsOrError"]
            for found in recent.get("results", []):
                if {"key": tags.LAUNCH_KEY, "value": launch_key} in found["tags"]:
                    return found["id"]
        every_tag = {**(run_tags or {}), **({tags.LAUNCH_KEY: launch_key} if launch_key else {})}
        params = {
            "assetSelection": [{"path": [asset]} for asset in assets],
            "partitionNames": partitions,
            "runConfigData": run_config,
            "title": title,
            **({"tags": [{"key": k, "value": v} for k, v in every_tag.items()]} if every_tag else {}),
        }
        launched = self._query(BACKFILL, params=params)["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise DagsterRefused(f"{launched['__typename']}: {launched.get('message', '')}".rstrip(": "))
        return launched["backfillId"]

    def cancel_backfill(self, backfill_id: str) -> None:
        """Launch no more runs of the backfill (those it launched are terminated separately)."""
        cancelled = self._query(CANCEL_BACKFILL, id=backfill_id)["cancelPartitionBackfill"]
        if cancelled["__typename"] not in ("CancelBackfillSuccess",):
            raise DagsterRefused(f"{cancelled['__typename']}: {cancelled.get('message', '')}".rstrip(": "))

    def add_partition(self, partitions: str, key: str) -> None:
        """Add ``key`` to the dynamic partitions ``partitions`` (tenants or products), if it is new."""
        added = self._query(ADD_PARTITION, selector=REPOSITORY, name=partitions, key=key)["addDynamicPartition"]
        if added["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise DagsterUnavailable(added.get("message", added["__typename"]))

    def materialized(self, asset_keys: list[str], partition: str) -> set[str]:
        """Those of ``asset_keys`` materialized for ``partition``."""
        return {
            key
            for key in asset_keys
            if (
                self._query(MATERIALIZED, key={"path": [key]}, partition=partition)["assetOrError"].get(
                    "assetMaterializations"
                )
            )
        }

    def runs(self, run_ids: list[str]) -> dict[str, dict]:
        if not run_ids:
            return {}
        return {r["runId"]: r for r in self._query(RUNS, ids=run_ids)["runsOrError"]["results"]}

    def run_states(self, tenants: list[str], tenant_tag: str, renders_tag: str) -> tuple[dict, dict]:
        """In one request: the runs in flight counted by (tenant, state) and the queued render runs by
        tenant (``{"runs": …, "renders_queued": …}``), and the finished runs counted by (tenant, state)."""
        variables = {f"t{i}": tenant for i, tenant in enumerate(tenants)}
        fields = [
            f"inflight: runsOrError(filter: {{statuses: [{', '.join(IN_FLIGHT)}]}}) "
            "{ ... on Runs { results { status tags { key value } } } }"
        ]
        for i in range(len(tenants)):
            for state in FINISHED:
                fields.append(
                    f"t{i}_{state}: runsOrError(filter: {{statuses: [{state}], "
                    f'tags: [{{key: "{tenant_tag}", value: $t{i}}}]}}) {{ ... on Runs {{ count }} }}'
                )
        declared = "".join(f"${name}: String!, " for name in variables).rstrip(", ")
        data = self._query(
            f"query({declared}) {{ {' '.join(fields)} }}" if variables else f"{{ {fields[0]} }}", **variables
        )
        in_flight: dict = {"runs": {}, "renders_queued": {}}
        for run in data["inflight"].get("results", []):
            run_tags = {t["key"]: t["value"] for t in run["tags"]}
            tenant = run_tags.get(tenant_tag, "")
            key = (tenant, run["status"])
            in_flight["runs"][key] = in_flight["runs"].get(key, 0) + 1
            if run["status"] == "QUEUED" and renders_tag in run_tags:
                in_flight["renders_queued"][tenant] = in_flight["renders_queued"].get(tenant, 0) + 1
        finished = {
            (tenant, state): data[f"t{i}_{state}"]["count"] for i, tenant in enumerate(tenants) for state in FINISHED
        }
        return in_flight, finished

    def problems(self) -> list[tuple[str, str, str]]:
        """What fails in Dagster: ``(kind, name, message)`` for a code location that does not load
        (``code_location``) and each running sensor or schedule whose latest tick failed."""
        data = self._query(PROBLEMS, selector=REPOSITORY)
        found = [
            ("code_location", entry["name"], entry["locationOrLoadError"]["message"])
            for entry in data["workspaceOrError"].get("locationEntries", [])
            if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError"
        ]
        repository = data["repositoryOrError"]
        for kind, state in (("sensor", "sensorState"), ("schedule", "scheduleState")):
            for instigator in repository.get(f"{kind}s", []):
                ticks = instigator[state]["ticks"] if instigator[state]["status"] == "RUNNING" else []
                if ticks and ticks[0]["status"] == "FAILURE":
                    error = ticks[0]["error"] or {}  # Dagster's wrapper; the sensor's own error is the last cause
                    message = ([error] + error.get("causes", []))[-1].get("message") or "the tick failed"
                    found.append((kind, instigator["name"], message.strip().splitlines()[0][:500]))
        return found

    def terminate(self, run_ids: list[str]) -> None:
        """Terminate runs; the answer waits while a run launcher stops a run's container (Docker gives
        it 10 s to exit, then kills it), so this waits longer than other calls."""
        if run_ids:
            self._query(TERMINATE, timeout=TERMINATE_TIMEOUT_SECONDS, ids=run_ids)
