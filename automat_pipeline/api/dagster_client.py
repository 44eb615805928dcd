"""Dagster, as the API sees it: its GraphQL endpoint on the webserver.

GraphQL rather than an in-process instance: launching needs the code location, which the
webserver already serves, and the API then needs neither the pipeline's imports nor its storage.
"""

from __future__ import annotations

import httpx

from automat_pipeline import tags

LOCATION = "automat"  # workspace.yaml and docker/workspace.yaml name it so
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}

LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""
ADD_PARTITION = """mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
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


class DagsterUnavailable(Exception):
    """The webserver did not answer, or answered with an error: worth trying again later."""


class DagsterRefused(DagsterUnavailable):
    """The webserver answered and refused the launch (an unknown asset, invalid run config): trying
    again will not help unless the code location changes."""


class DagsterClient:
    def __init__(self, graphql_url: str, timeout: float = 10.0):
        self.url = graphql_url
        self.http = httpx.Client(timeout=timeout)  # one client: a new one costs an SSL context (~40 ms CPU)

    def _query(self, query: str, **variables) -> dict:
        try:
            response = self.http.post(self.url, json={"query": query, "variables": variables})
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
        self, assets: list[str], partition: str, run_config: dict, run_tags: dict[str, str], launch_key: str
    ) -> str:
        """Launch assets for one tenant|product partition (added first if new); the run id.

        Idempotent by ``launch_key``: a launch whose answer was lost (a timeout) is found by its
        tag instead of launched twice."""
        found = self._query(RUN_WITH_TAG, key=tags.LAUNCH_KEY, value=launch_key)["runsOrError"].get("results")
        if found:
            return found[0]["runId"]
        self.add_partition("products", partition)
        params = {
            "selector": {
                **REPOSITORY,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": [asset]} for asset in assets],
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
        if run_ids:
            self._query(TERMINATE, ids=run_ids)
