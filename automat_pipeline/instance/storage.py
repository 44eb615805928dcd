"""Dagster's PostgreSQL storage, with a small connection pool in every process that uses it.

dagster-postgres opens a new connection for every storage call (SQLAlchemy's NullPool), except in
the webserver: about five per Dagster event. A run worker storing a batch's events spent a quarter
of its time connecting (bench/run.py daemon: 3,017 connections, 5.7 of 24 s for 50 products). This
storage keeps one connection per storage (runs, events, schedules) and opens extra ones only for
concurrent calls, as the webserver's storage does, and checks a pooled connection before each use.
The instance names this class in ``dagster.yaml``.
"""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

POOL_RECYCLE_SECONDS = 3600
OVERFLOW = 10  # connections beyond the pooled one while calls overlap, closed when they end


class PooledPostgresStorage(DagsterPostgresStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            # The webserver's pool: a held connection, no statement time-out (0) in run workers and the daemon.
            storage.optimize_for_webserver(
                statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=OVERFLOW
            )
            # A pooled connection outlives a PostgreSQL restart: pinged at checkout, a dead one is replaced
            # instead of losing the call (a run worker's RUN_SUCCESS, tests/test_faults.py). Dagster's
            # engine factory takes no pre-ping option, so it is set on the pool it made.
            storage._engine.pool._pre_ping = True

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
