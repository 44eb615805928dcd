"""Dagster's PostgreSQL storage, with a small connection pool in every process that uses it, and pools
(``blender``) that admit no more steps than their limit.

dagster-postgres opens a new connection for every storage call (SQLAlchemy's NullPool), except in
the webserver: about five per Dagster event. A run worker storing a batch's events spent a quarter
of its time connecting (bench/run.py daemon: 3,017 connections, 5.7 of 24 s for 50 products). This
storage keeps one connection per storage (runs, events, schedules) and opens extra ones only for
concurrent calls, as the webserver's storage does, and checks a pooled connection before each use.
The instance names this class in ``dagster.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.base import ConcurrencyClaimStatus
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

POOL_RECYCLE_SECONDS = 3600
OVERFLOW = 10  # connections beyond the pooled one while calls overlap, closed when they end


class PoolSafeEventLogStorage(PostgresEventLogStorage):
    """A pool's slots change one step or one process at a time.

    dagster-postgres runs a pool's bookkeeping on autocommit connections, so it races:
    - A claim is a ``SELECT … FOR UPDATE SKIP LOCKED`` and an ``UPDATE``, and the row lock ends with
      the ``SELECT``: steps claiming at the same moment all took the one free slot (up to four of
      eight with the ``blender`` pool at 1; two Blenders rendered on a host sized for one).
    - A pool's first use writes its default limit with ``INSERT``, and on a duplicate ``UPDATE``s in
      the transaction the failed ``INSERT`` aborted: when two steps first used a pool at once, or
      after ``default_limit`` changed in ``dagster.yaml``, the step failed with
      ``InFailedSqlTransaction``.
    A session advisory lock per pool is held around both, and the limit is written as an upsert.
    """

    @contextmanager
    def _pool_locked(self, pool: str) -> Iterator[None]:
        with self.index_connection() as conn:
            lock = {"pool": f"dagster-pool:{pool}"}
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:pool))"), lock)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:pool))"), lock)

    def claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None
    ) -> ConcurrencyClaimStatus:
        with self._pool_locked(concurrency_key):
            return super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        default_limit = self._instance.global_op_concurrency_default_limit if self.has_instance else None
        if default_limit is None or not (self.has_concurrency_limits_table and self.has_default_pool_limit_col):
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        self._reconcile_concurrency_limits_from_slots()
        with self._pool_locked(concurrency_key), self.index_transaction() as conn:
            conn.execute(
                insert(ConcurrencyLimitsTable)
                .values(concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True)
                .on_conflict_do_update(index_elements=["concurrency_key"], set_={"limit": default_limit})
            )
            self._allocate_concurrency_slots(conn, concurrency_key, default_limit)
        return True


class PooledPostgresStorage(DagsterPostgresStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        # dagster-postgres's three storages, made here rather than by its constructor so that the
        # event log is the pool-safe one (each storage made costs connections at every process start).
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PostgresRunStorage(postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._event_log_storage = PoolSafeEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
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
