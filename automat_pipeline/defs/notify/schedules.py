"""Digests, built by Dagster's schedules: ``hourly_digests`` at the top of every hour and
``daily_digests`` at 07:00 UTC run ``notification_digests``, which gathers what waits for each
user's digest into one notification and one e-mail (``notify.digests``); the deliverer sends it.

A tick's run key is its scheduled time, so Dagster launches each digest once; and each digest takes
only what nothing gathered yet, so even a second run of the same time gathers nothing twice.
"""

from datetime import datetime
from typing import Literal

from dagster import (
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    job,
    op,
    schedule,
)

from automat_pipeline.defs.resources import Database
from automat_pipeline.notify import digests


class DigestConfig(Config):
    period: Literal["hourly", "daily"]
    until: str  # ISO time: what arrived before it


@op
def build_digests(context: OpExecutionContext, config: DigestConfig, database: Database) -> dict:
    """Gather what waits for the period's digests."""
    with database.session(owner=True) as session:  # every user's waiting notifications, and their addresses
        made = digests.build(session, config.period, datetime.fromisoformat(config.until))
    context.log.info(f"[notification_digests] {config.period} until {config.until}: {made}")
    return made


@job(description="Gather each user's waiting notifications into their hourly or daily digest.")
def notification_digests():
    build_digests()


def _request(context: ScheduleEvaluationContext, period: str) -> RunRequest:
    until = context.scheduled_execution_time.isoformat()
    return RunRequest(
        run_key=f"{period}:{until}",
        run_config={"ops": {"build_digests": {"config": {"period": period, "until": until}}}},
    )


@schedule(
    cron_schedule="0 * * * *",
    job=notification_digests,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def hourly_digests(context: ScheduleEvaluationContext):
    return _request(context, "hourly")


@schedule(
    cron_schedule="0 7 * * *",
    job=notification_digests,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def daily_digests(context: ScheduleEvaluationContext):
    return _request(context, "daily")
