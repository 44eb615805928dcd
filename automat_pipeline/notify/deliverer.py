"""``automat notify``: the deliverer. It fans out queued events, sends due e-mails and webhook POSTs,
retries what failed, and watches what only time shows: a tenant's failure rate, the media volume's
free space, a code location that does not load, sensors and schedules whose ticks fail.

Where it runs, and why: a process of its own beside the API (``automat ui`` starts it; the compose
service ``notify``), neither a thread of the API nor a sensor of the code location. A request never
waits for it or shares an interpreter with it; it reports a code location that does not load, which
a sensor inside that location cannot; and the API runs several workers where one deliverer is
enough (more are safe: every claim skips rows another holds). The digests are built by Dagster's
schedules (``defs/notify/schedules.py``) and sent from here.

Sending: each tick claims the due deliveries with a lease (a deliverer that dies sends them again
once the lease ends: nothing is lost, a receiver may see a delivery twice and knows it by its
id), one task per endpoint (the SMTP server; each webhook) on a pool of threads, so a dead
endpoint holds up its own deliveries only, and one that does not answer is not tried again within
that task. A failure is retried with exponential backoff (30 s, 1 min, 2 min … at most an hour
apart) for a day, then given up (state failed) and the tenant's admins (a webhook) or the global
admins (e-mail) alerted.
"""

from __future__ import annotations

import json
import logging
import shutil
import smtplib
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from automat_pipeline.api.dagster_client import DagsterClient, DagsterUnavailable
from automat_pipeline.db.database import session
from automat_pipeline.db.models import Tenant
from automat_pipeline.errors import AutomatError
from automat_pipeline.notify import events, fanout, mail, webhooks
from automat_pipeline.notify.models import Event, Notification, Webhook
from automat_pipeline.settings import Settings

log = logging.getLogger(__name__)
LEASE_SECONDS = 600  # a claimed delivery is due again after this, should its sender die
CLAIM = text(
    "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => :lease) WHERE id IN ("
    "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now() "
    "AND NOT (channel = 'webhook' AND webhook_id = ANY(CAST(:busy AS int[]))) "
    "AND NOT (channel = 'email' AND :mail_busy) "
    "ORDER BY next_attempt_at, id LIMIT :n FOR UPDATE SKIP LOCKED) "
    "RETURNING id, tenant_id, channel, webhook_id, notification_id, event_id, target, payload, attempts, created_at"
)
FAILURE_RATE = text(
    "SELECT tenant_id, count(*) FILTER (WHERE state = 'failed') AS failed, count(*) AS ended FROM order_lines "
    "WHERE ended_at > now() - interval '1 hour' AND state IN ('completed', 'failed') "
    "GROUP BY tenant_id HAVING count(*) >= :least"
)
LEAST_LINES = 10  # a failure rate over fewer lines says little


class Deliverer:
    def __init__(
        self,
        settings: Settings,
        dagster: DagsterClient | None = None,
        *,
        backoff_seconds: float = 30.0,
        give_up_after: timedelta = timedelta(days=1),
        workers: int = 8,
        interval: float = 1.0,
        watch_seconds: float = 60.0,
    ):
        self.settings, self.dagster = settings, dagster
        self.url = settings.database_url  # the tables' owner: the deliverer works for every tenant
        self.smtp = mail.Smtp.from_url(settings.smtp_url.get_secret_value()) if settings.smtp_url else None
        self.backoff_seconds, self.give_up_after = backoff_seconds, give_up_after
        self.interval, self.watch_seconds = interval, watch_seconds
        self.http = httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="deliver")
        self.busy: set[str] = set()  # endpoints a task is sending to
        self.lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval`` and watch every ``watch_seconds`` until ``stop`` is set."""
        watched = 0.0
        while not stop.is_set():
            try:
                self.tick()
                if time.monotonic() - watched >= self.watch_seconds:
                    watched = time.monotonic()
                    self.watch()
            except SQLAlchemyError as error:  # the database is away: next time
                log.warning("deliverer: %s", error)
            except Exception:  # one bad row must never stop the deliveries of everyone else
                log.exception("deliverer: a tick failed; the loop goes on")
            stop.wait(self.interval)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def tick(self, wait: bool = False) -> dict[str, int]:
        """Fan out every queued event, then start sending what is due (``wait``: until it is sent)."""
        fanned = self.fan_out()
        futures = self.send_due()
        if wait:
            for future in futures:
                future.result()
        return {"events": fanned, "endpoints": len(futures)}

    def fan_out(self) -> int:
        total = 0
        while True:  # a batch may add events (an order's summary): until the queue is empty
            with session(self.url) as s, s.begin():
                fanned = fanout.dispatch(s, self.settings.public_url, email=self.smtp is not None)
            total += fanned
            if not fanned:
                return total

    def send_due(self, limit: int = 500) -> list[Future]:
        """Claim due deliveries of endpoints nobody is sending to; a task per endpoint."""
        with self.lock:
            busy_hooks = [int(key.split(":")[1]) for key in self.busy if key.startswith("webhook:")]
            mail_busy = "smtp" in self.busy
        with session(self.url) as s, s.begin():
            claimed = s.execute(
                CLAIM, {"lease": LEASE_SECONDS, "busy": busy_hooks, "mail_busy": mail_busy, "n": limit}
            ).all()
        groups: dict[str, list] = defaultdict(list)
        for row in sorted(claimed, key=lambda r: r.id):
            groups["smtp" if row.channel == "email" else f"webhook:{row.webhook_id}"].append(row)
        futures = []
        for endpoint, rows in groups.items():
            with self.lock:
                self.busy.add(endpoint)
            futures.append(self.pool.submit(self._send, endpoint, rows))
        return futures

    def _send(self, endpoint: str, rows: list) -> None:
        try:
            if endpoint == "smtp":
                self._send_mail(rows)
            else:
                self._send_webhooks(int(endpoint.split(":")[1]), rows)
        except Exception:  # their lease ends and they are tried again
            log.exception("deliverer: sending to %s failed", endpoint)
        finally:
            with self.lock:
                self.busy.discard(endpoint)

    def _send_mail(self, rows: list) -> None:
        if self.smtp is None:  # e-mail was switched off since these were queued
            for row in rows:
                self._finish(row, None, "not sent: e-mail is off (no AUTOMAT_SMTP_URL)", 0, final=True, alert=False)
            return
        with session(self.url) as s:
            notes = {
                n.id: n
                for n in s.scalars(select(Notification).where(Notification.id.in_([r.notification_id for r in rows])))
            }
        started = time.perf_counter()
        try:
            smtp = self.smtp.connect()
        except (OSError, smtplib.SMTPException) as error:
            for row in rows:
                self._finish(row, None, f"SMTP {self.smtp.host}:{self.smtp.port}: {error}", _ms(started))
            return
        unreachable = None
        try:
            for row in rows:
                if unreachable:
                    self._finish(row, None, f"not tried: {unreachable}", 0)
                    continue
                note = notes.get(row.notification_id)
                subject, body = (
                    (row.payload["subject"], row.payload["body"]) if row.payload else (note.title, note.body)
                )
                started = time.perf_counter()
                try:
                    smtp.send_message(mail.message(self.settings.mail_from, row.target, subject, body))
                    self._finish(row, 250, None, _ms(started))
                except smtplib.SMTPResponseException as error:
                    self._finish(row, error.smtp_code, f"SMTP {error.smtp_code}: {error.smtp_error!r}", _ms(started))
                except smtplib.SMTPRecipientsRefused as error:
                    self._finish(row, None, f"SMTP refused the recipient: {error.recipients}", _ms(started))
                except (OSError, smtplib.SMTPException) as error:
                    unreachable = f"SMTP {self.smtp.host}:{self.smtp.port}: {error}"
                    self._finish(row, None, unreachable, _ms(started))
        finally:
            with suppress(OSError, smtplib.SMTPException):
                smtp.quit()

    def _send_webhooks(self, webhook_id: int, rows: list) -> None:
        with session(self.url) as s:
            hook = s.get(Webhook, webhook_id)
            found = {e.id: e for e in s.scalars(select(Event).where(Event.id.in_([r.event_id for r in rows])))}
            tenants = dict(
                s.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_({r.tenant_id for r in rows}))).all()
            )
        unreachable = None
        for row in rows:
            event = found[row.event_id]
            if hook is None or not (hook.active or event.type == "webhook.test"):
                self._finish(row, None, "not sent: the webhook was deactivated or deleted", 0, final=True, alert=False)
                continue
            if unreachable:
                self._finish(row, None, f"not tried: {unreachable}", 0)
                continue
            body = json.dumps(
                {
                    "id": event.id,
                    "type": event.type,
                    "at": event.at.isoformat(),
                    "tenant": tenants.get(event.tenant_id),
                    "subject": event.subject,
                    "data": event.data,
                },
                separators=(",", ":"),
            ).encode()
            started = time.perf_counter()
            try:
                webhooks.check_url(hook.url, self.settings.webhook_private_networks)
                response = self.http.post(
                    hook.url, content=body, headers=webhooks.headers(hook.secret, row.id, event.type, body)
                )
            except AutomatError as error:
                self._finish(row, None, str(error), _ms(started))
                continue
            except httpx.HTTPError as error:
                unreachable = f"{hook.url}: {type(error).__name__}: {error}"
                self._finish(row, None, unreachable, _ms(started))
                continue
            ok = 200 <= response.status_code < 300
            error = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
            self._finish(row, response.status_code, error, _ms(started))

    def _finish(
        self, row, status: int | None, error: str | None, ms: int, final: bool = False, alert: bool = True
    ) -> None:
        """Record one attempt: sent, or failed and due again after the backoff, or given up (a day after
        it was queued, or ``final``) and alerted."""
        now = datetime.now(UTC)
        attempts = row.attempts + 1
        entry = json.dumps([{"at": now.isoformat(), "status": status, "error": error, "ms": ms}])
        given_up = error is not None and (final or now - row.created_at >= self.give_up_after)
        values = {"id": row.id, "attempts": attempts, "status": status, "error": error, "entry": entry}
        with session(self.url) as s, s.begin():
            if error is None:
                s.execute(
                    text(
                        "UPDATE deliveries SET state = 'sent', sent_at = now(), attempts = :attempts, "
                        "last_status = :status, last_error = NULL, log = log || CAST(:entry AS jsonb) WHERE id = :id"
                    ),
                    values,
                )
                return
            due = now + timedelta(seconds=webhooks.backoff(attempts, self.backoff_seconds))
            s.execute(
                text(
                    "UPDATE deliveries SET state = :state, next_attempt_at = :due, attempts = :attempts, "
                    "last_status = :status, last_error = :error, log = log || CAST(:entry AS jsonb) WHERE id = :id"
                ),
                values | {"state": "failed" if given_up else "pending", "due": due},
            )
            if given_up and alert:
                self._given_up(s, row, error, now)

    def _given_up(self, s: Session, row, error: str, now: datetime) -> None:
        day = now.strftime("%Y-%m-%d")
        if row.channel == "webhook":
            events.record(
                s,
                "alert.webhook_failed",
                ("webhook", row.webhook_id),
                tenant_id=row.tenant_id,
                key=f"alert.webhook_failed:{row.webhook_id}:{day}",
                message=f"webhook {row.target} failed for a day and delivery {row.id} was given up",
                details=f"The last attempt: {error}. GET /webhooks/{row.webhook_id}/deliveries has every attempt.",
                webhook_id=row.webhook_id,
                delivery_id=row.id,
            )
        else:
            events.record(
                s,
                "alert.email_failed",
                None,
                tenant_id=None,
                key=f"alert.email_failed:{day}",
                message=f"an e-mail to {row.target} failed for a day and was given up",
                details=f"The last attempt: {error}.",
                delivery_id=row.id,
            )

    def watch(self) -> list[int]:
        """The alerts that time shows: failure rates, free space, Dagster's code location and sensors."""
        now = datetime.now(UTC)
        written = []
        for watcher in (self._failure_rates, self._disk_space, self._dagster):
            try:  # one watcher that fails must not silence the others
                with session(self.url) as s, s.begin():
                    written += watcher(s, now)
            except Exception:
                log.exception("deliverer: %s failed", watcher.__name__)
        return [w for w in written if w]

    def _failure_rates(self, s: Session, now: datetime) -> list:
        threshold = self.settings.alert_failure_rate
        written = []
        for tenant_id, failed, ended in s.execute(FAILURE_RATE, {"least": LEAST_LINES}).all():
            if failed / ended > threshold:
                written.append(
                    events.record(
                        s,
                        "alert.failure_rate",
                        None,
                        tenant_id=tenant_id,
                        key=f"alert.failure_rate:{tenant_id}:{now:%Y-%m-%dT%H}",
                        message=f"{failed} of {ended} order lines failed within the last hour "
                        f"({failed / ended:.0%}; the threshold is {threshold:.0%})",
                        details="GET /activity?type=order_line.failed lists them with their classes and reasons.",
                        failed=failed,
                        ended=ended,
                    )
                )
        return written

    def _disk_space(self, s: Session, now: datetime) -> list:
        volume = Path(self.settings.media_dir)
        while not volume.exists():  # a folder not made yet lies on its parent's volume
            volume = volume.parent
        free = shutil.disk_usage(volume).free / 2**30
        if free >= self.settings.alert_min_free_gb:
            return []
        return [
            events.record(
                s,
                "alert.disk_space",
                None,
                tenant_id=None,
                key=f"alert.disk_space:{now:%Y-%m-%d}",
                message=f"the media volume has {free:.1f} GiB free (the threshold is "
                f"{self.settings.alert_min_free_gb:g} GiB)",
                details=f"{self.settings.media_dir}",
                free_gb=round(free, 2),
            )
        ]

    def _dagster(self, s: Session, now: datetime) -> list:
        if self.dagster is None:
            return []
        try:
            problems = self.dagster.problems()
        except DagsterUnavailable as error:  # the webserver is away: the API's health says so
            log.warning("deliverer: Dagster does not answer: %s", error)
            return []
        written = []
        for kind, name, message in problems:
            type = "alert.code_location_failed" if kind == "code_location" else "alert.sensor_failed"
            written.append(
                events.record(
                    s,
                    type,
                    None,
                    tenant_id=None,
                    key=f"{type}:{name}:{now:%Y-%m-%dT%H}",  # once an hour while it fails
                    message=f"{kind.replace('_', ' ')} {name} fails: {message}",
                    details="The Dagster UI shows the error in full.",
                    kind=kind,
                    name=name,
                )
            )
        return written


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
