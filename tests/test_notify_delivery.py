"""Notifications delivered for real: a real SMTP server (STARTTLS and AUTH) and real HTTP receivers on
loopback, the deliverer over the real database. One summary per recipient, e-mail read back,
signed webhooks verified with the documented recipe, retries, a dead endpoint that delays nothing
else and loses nothing, digests, and a tenant without notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import as_role, free_port, login
from loopback import Mailbox, Receiver
from sqlalchemy import func, select, text

from automat_pipeline.api.dagster_client import DagsterClient
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import OrderLine
from automat_pipeline.notify import digests, events, webhooks
from automat_pipeline.notify.deliverer import Deliverer
from automat_pipeline.notify.mail import Smtp
from automat_pipeline.notify.models import Delivery, Event, Notification
from automat_pipeline.settings import Settings

SECRET = "a-webhook-secret-of-the-tenant"


@pytest.fixture
def deliverers(env):
    """Deliverers over the test database (``make(smtp_url, **options)``), closed afterwards."""
    made = []

    def make(smtp_url: str | None = None, private_networks: bool = True, **options) -> Deliverer:
        settings = Settings(
            database_url=env["AUTOMAT_DATABASE_URL"],
            smtp_url=smtp_url,
            public_url="https://automat.example",
            webhook_private_networks=private_networks,
            media_dir=env["AUTOMAT_MEDIA_DIR"],
            uploads_dir=env["AUTOMAT_UPLOADS_DIR"],
        )
        made.append(Deliverer(settings, **options))
        return made[-1]

    yield make
    for deliverer in made:
        deliverer.close()


@pytest.fixture
def hooks(api):
    """The API with webhooks to loopback allowed (the receivers here are on 127.0.0.1)."""
    api.app.state.settings = api.app.state.settings.model_copy(update={"webhook_private_networks": True})
    return api


def submitted(api, world, headers, *output_types: str) -> dict:
    order = api.post("/orders", headers=headers).json()
    for output_type in output_types:
        line = {"product_id": world["products"]["6204-2RS"], "output_type": output_type}
        api.post(f"/orders/{order['id']}/lines", headers=headers, json=line)
    return api.post(f"/orders/{order['id']}/submit", headers=headers).json()


def finish(env, outcomes: dict[int, tuple]) -> None:
    """What the order_lines sensor does when lines' runs end: each line's outcome and, in the same
    transaction, the lines' events and the order's summary."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for line_id, (state, *failure) in outcomes.items():
            s.execute(
                text("UPDATE order_lines SET run_id = :r, state = 'queued' WHERE id = :l"),
                {"r": f"run-{line_id}", "l": line_id},
            )
            values = dict(zip(("error_class", "reason"), failure, strict=False))
            repository.record_line_outcome(s, line_id, f"run-{line_id}", state=state, **values)
        events.lines_settled(s, OrderLine.id.in_(list(outcomes)))


def inbox(api, headers) -> dict:
    return api.get("/notifications", headers=headers).json()


ORDERS_NO_EMAIL = {
    "orders": {"in_app": "immediate", "email": "never"},
    "imports": {"in_app": "immediate", "email": "immediate"},
    "alerts": {"in_app": "never", "email": "never"},
}


def test_an_order_summary_reaches_each_recipient_once_by_their_preferences(api, world, env, deliverers, tmp_path):
    client, pm, ta = login(api, "client@acme.example"), as_role(api, world, "pm"), as_role(api, world, "ta")
    assert api.put("/notifications/preferences", headers=pm, json=ORDERS_NO_EMAIL).status_code == 200
    order = submitted(api, world, client, "thumbnail", "still-web")
    first, second = (line["id"] for line in order["lines"])
    finish(env, {first: ("completed",), second: ("failed", "timeout", "Blender did not finish in 300 s")})
    with Mailbox(tls_dir=tmp_path, login=("automat", "mail password")) as mailbox:
        deliverer = deliverers(mailbox.url())
        deliverer.tick(wait=True)
        finish(env, {first: ("completed",), second: ("failed", "timeout", "again")})  # a sensor tick seen twice
        deliverer.tick(wait=True)
        [mail] = mailbox.wait(1)
        time.sleep(0.5)
        assert len(mailbox.messages) == 1 and mailbox.logins == ["automat"]  # over STARTTLS, logged in
    title = f"{order['number']} finished: 1 of 2 succeeded, 1 failed (1 timeout)"
    assert (mail["To"], mail["Subject"].strip()) == ("client@acme.example", f"[Automat] {title}")
    text_body = mail.get_content()
    assert f"line {second}: 6204-2RS still-web: timeout: Blender did not finish in 300 s" in text_body
    assert f"https://automat.example/orders/{order['id']}" in text_body
    for headers in (client, pm):  # the creator and the project manager: one summary each
        mine = inbox(api, headers)
        assert [(n["kind"], n["title"]) for n in mine["items"]] == [("order_summary", title)] and mine["unread"] == 1
    assert inbox(api, ta)["items"] == [] and inbox(api, login(api, "client2@acme.example"))["items"] == []
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        summaries = s.scalar(select(func.count()).select_from(Event).where(Event.type == "order.completed"))
    assert summaries == 1


def test_a_dead_smtp_server_delays_no_webhook_and_loses_no_e_mail(hooks, world, env, deliverers):
    api = hooks
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    silent = socket.create_server(("127.0.0.1", free_port()))  # accepts, never answers: worse than refusing
    port = silent.getsockname()[1]
    with Receiver() as receiver:
        hook = {"url": receiver.url, "event_types": ["order.rejected"], "secret": SECRET}
        assert api.post("/webhooks", headers=ta, json=hook).status_code == 201
        order = api.post("/orders", headers=client).json()
        api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "wrong bearing"})
        deliverer = deliverers(f"smtp://127.0.0.1:{port}?timeout=3", backoff_seconds=0.2)
        started = time.monotonic()
        deliverer.tick()  # sends in the background: the e-mail's task waits on the silent server
        receiver.wait(1, seconds=2.5)
        assert time.monotonic() - started < 2.5  # the webhook went while the e-mail waited
    deadline = time.monotonic() + 10
    while True:
        with session(env["AUTOMAT_DATABASE_URL"]) as s:
            mail = s.scalar(select(Delivery).where(Delivery.channel == "email"))
        if mail.attempts:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (mail.state, mail.attempts) == ("pending", 1) and "timed out" in mail.last_error
    silent.close()
    with Mailbox(port=port) as mailbox:  # the server is back: the e-mail goes, nothing was lost
        time.sleep(0.3)
        deliverer.tick(wait=True)
        [sent] = mailbox.wait(1)
    assert sent["Subject"].strip() == f"[Automat] {order['number']} was rejected: wrong bearing"


def test_webhooks_are_signed_as_documented_and_retried_after_a_500(hooks, world, env, deliverers):
    api = hooks
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    with Receiver(script=[500]) as receiver:
        created = api.post(
            "/webhooks", headers=ta, json={"url": receiver.url, "event_types": ["order.rejected"], "secret": SECRET}
        ).json()
        assert created["secret"] == SECRET and created["secret_hint"] == "…nant"
        assert api.get(f"/webhooks/{created['id']}", headers=ta).json()["secret"] is None  # shown once
        order = api.post("/orders", headers=client).json()
        api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "not ours"})
        deliverer = deliverers(backoff_seconds=0.1)
        deliverer.tick(wait=True)
        [log] = api.get(f"/webhooks/{created['id']}/deliveries", headers=ta).json()["items"]
        assert (log["state"], log["attempts"], log["last_status"]) == ("pending", 1, 500)
        time.sleep(0.2)
        deliverer.tick(wait=True)
        first, second = receiver.wait(2)
    assert first.body == second.body and first.headers["Automat-Delivery"] == second.headers["Automat-Delivery"]
    for received in (first, second):  # the README's recipe, by hand
        timestamp, signature = received.headers["Automat-Timestamp"], received.headers["Automat-Signature"]
        expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
        assert signature == f"v1={expected}" and abs(time.time() - int(timestamp)) < 60
        assert webhooks.verify(SECRET, timestamp, signature, received.body)
    assert not webhooks.verify(SECRET, timestamp, signature, received.body.replace(b"not ours", b"not OURS"))
    assert not webhooks.verify(SECRET, timestamp, signature, received.body, now=int(timestamp) + 301)  # replayed
    payload = json.loads(second.body)
    assert (payload["type"], payload["tenant"], payload["subject"]) == (
        "order.rejected",
        "acme",
        f"order:{order['id']}",
    )
    assert payload["data"]["reason"] == "not ours" and second.headers["Automat-Event"] == "order.rejected"
    [log] = api.get(f"/webhooks/{created['id']}/deliveries", headers=ta).json()["items"]
    assert (log["state"], log["attempts"], [a["status"] for a in log["log"]]) == ("sent", 2, [500, 200])


def test_a_webhook_failing_for_a_day_is_given_up_and_its_tenant_admins_alerted(hooks, world, env, deliverers):
    api = hooks
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    with Receiver(script=[503] * 5) as receiver:
        hook = api.post(
            "/webhooks", headers=ta, json={"url": receiver.url, "event_types": ["order.rejected"], "secret": SECRET}
        ).json()
        order = api.post("/orders", headers=client).json()
        api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "no"})
        deliverer = deliverers(give_up_after=timedelta(0))  # a day, passed at once
        deliverer.tick(wait=True)
        deliverer.tick(wait=True)  # the alert's fan-out
    [log] = api.get(f"/webhooks/{hook['id']}/deliveries", headers=ta).json()["items"]
    assert (log["state"], log["last_status"]) == ("failed", 503)
    [alert] = inbox(api, ta)["items"]
    assert alert["kind"] == "alert" and alert["title"].startswith(f"Alert: webhook {receiver.url} failed for a day")
    assert inbox(api, pm)["items"] == []  # staff alerts are the tenant admins'


def test_a_digest_gathers_several_events_into_one_notification_and_one_e_mail(api, world, env, deliverers):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    hourly = {"in_app": "hourly", "email": "hourly"}
    prefs = {"orders": hourly, "imports": hourly, "alerts": {"in_app": "never", "email": "never"}}
    assert api.put("/notifications/preferences", headers=client, json=prefs).json()["preferences"]["orders"] == hourly
    numbers = []
    for reason in ("first", "second", "third"):
        order = api.post("/orders", headers=client).json()
        numbers.append(api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": reason}).json()["number"])
    with Mailbox() as mailbox:
        deliverer = deliverers(mailbox.url())
        deliverer.tick(wait=True)
        assert inbox(api, client)["items"] == [] and mailbox.messages == []  # waiting for the hour
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            made = digests.build(s, "hourly", datetime.now(UTC) + timedelta(seconds=1))
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            again = digests.build(s, "hourly", datetime.now(UTC) + timedelta(seconds=1))
        deliverer.tick(wait=True)
        [mail] = mailbox.wait(1)
    assert made == {"in_app": 1, "email": 1} and again == {"in_app": 0, "email": 0}
    assert mail["Subject"].strip() == "[Automat] 3 notifications (hourly digest)"
    [digest] = inbox(api, client)["items"]
    assert digest["kind"] == "digest" and digest["title"] == "3 notifications (hourly digest)"
    for number, reason in zip(numbers, ("first", "second", "third"), strict=True):
        assert (
            f"{number} was rejected: {reason}" in mail.get_content()
            and f"{number} was rejected: {reason}" in digest["body"]
        )


def test_a_tenant_without_notifications_gets_them_in_the_api_only(hooks, world, env, deliverers):
    api = hooks
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    settings = api.get("/settings", headers=ta).json() | {"notifications_enabled": False}
    assert api.put("/settings", headers=ta, json=settings).status_code == 200
    with Mailbox() as mailbox, Receiver() as receiver:
        api.post("/webhooks", headers=ta, json={"url": receiver.url, "event_types": ["order.rejected"]})
        order = api.post("/orders", headers=client).json()
        api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "quiet"})
        deliverers(mailbox.url()).tick(wait=True)
        time.sleep(0.3)
        assert mailbox.messages == [] and receiver.requests == []
    assert [n["title"] for n in inbox(api, client)["items"]] == [f"{order['number']} was rejected: quiet"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0


def test_send_test_event_reaches_the_one_webhook(hooks, world, env, deliverers):
    api = hooks
    ta = as_role(api, world, "ta")
    with Receiver() as receiver, Receiver() as other:
        hook = api.post("/webhooks", headers=ta, json={"url": receiver.url, "event_types": ["order.completed"]}).json()
        api.post("/webhooks", headers=ta, json={"url": other.url, "event_types": ["order.completed"]})
        queued = api.post(f"/webhooks/{hook['id']}/test", headers=ta)
        assert queued.status_code == 202
        deliverers().tick(wait=True)
        [received] = receiver.wait(1)
        assert other.requests == []
    assert received.headers["Automat-Event"] == "webhook.test"
    assert webhooks.verify(
        hook["secret"], received.headers["Automat-Timestamp"], received.headers["Automat-Signature"], received.body
    )
    assert json.loads(received.body)["id"] == queued.json()["event_id"]


def test_webhooks_reach_no_private_address_unless_the_deployment_allows_it(api, world, env, deliverers):
    ta = as_role(api, world, "ta")
    for url in (
        "http://127.0.0.1:5432/x",
        "http://localhost:3000/graphql",
        "http://[::1]/x",
        "http://169.254.169.254/",
    ):
        refused = api.post("/webhooks", headers=ta, json={"url": url, "event_types": ["order.completed"]})
        assert (refused.status_code, refused.json()["error_class"]) == (422, "private_address"), url
    assert (
        api.post(
            "/webhooks", headers=ta, json={"url": "ftp://x.example/", "event_types": ["order.completed"]}
        ).status_code
        == 422
    )
    with Receiver() as receiver:  # one saved before the deployment closed private networks: refused when sent
        api.app.state.settings = api.app.state.settings.model_copy(update={"webhook_private_networks": True})
        hook = api.post("/webhooks", headers=ta, json={"url": receiver.url, "event_types": ["order.completed"]}).json()
        api.post(f"/webhooks/{hook['id']}/test", headers=ta)
        deliverers(private_networks=False).tick(wait=True)
        assert receiver.requests == []
    [log] = api.get(f"/webhooks/{hook['id']}/deliveries", headers=ta).json()["items"]
    assert log["state"] == "pending" and "private_address" in log["last_error"]


def test_smtp_urls_say_how_to_connect():
    smtp = Smtp.from_url("smtp+starttls://mailer%40acme:p%2Fw@mail.example:2587?cafile=/ca.pem&timeout=3")
    assert (smtp.security, smtp.host, smtp.port, smtp.username, smtp.password) == (
        "starttls",
        "mail.example",
        2587,
        "mailer@acme",
        "p/w",
    )
    assert (smtp.cafile, smtp.timeout) == ("/ca.pem", 3.0)
    assert (Smtp.from_url("smtps://m.example").port, Smtp.from_url("smtp://m.example").security) == (465, "plain")
    for wrong in ("http://m.example", "smtp://user:pw@m.example"):  # a password only over TLS
        with pytest.raises(Exception, match="AUTOMAT_SMTP_URL"):
            Smtp.from_url(wrong)


def test_only_its_user_reads_a_notification(api, world, env, deliverers):
    """Row-level security alone: as the API's role with another user named, nothing."""
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    order = api.post("/orders", headers=client).json()
    api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "x"})
    deliverers().tick(wait=True)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [(note_id, user_id)] = s.execute(select(Notification.id, Notification.user_id)).all()
    from automat_pipeline.embedded import api_url

    with session(api_url(env["AUTOMAT_DATABASE_URL"])) as s, s.begin():
        s.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": str(world["tenants"]["acme"])})
        assert s.scalar(text("SELECT count(*) FROM notifications")) == 0  # no user named: nothing
        s.execute(text("SELECT set_config('app.current_user_id', :u, true)"), {"u": str(user_id + 1)})
        assert s.scalar(text("SELECT count(*) FROM notifications")) == 0
        s.execute(text("SELECT set_config('app.current_user_id', :u, true)"), {"u": str(user_id)})
        assert s.scalar(text("SELECT id FROM notifications")) == note_id
        s.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": str(world["tenants"]["beta"])})
        assert s.scalar(text("SELECT count(*) FROM notifications")) == 0  # the user named, another tenant
    read = api.post("/notifications/read", headers=client, json={"ids": [note_id]}).json()
    assert read == {"unread": 0} and inbox(api, client)["items"][0]["read_at"]
    assert api.post("/notifications/read", headers=client, json={}).status_code == 422


def ended_lines(env, tenant_id: int, product_id: int, failed: int, completed: int) -> None:
    """An order of ``tenant_id`` whose lines ended within the last hour, ``failed`` of them failed."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        order = s.execute(
            text(
                "INSERT INTO orders (tenant_id, number, status, submitted_at) "
                "VALUES (:t, :n, 'submitted', now()) RETURNING id"
            ),
            {"t": tenant_id, "n": f"ORD-1999-{tenant_id:06d}"},
        ).scalar()
        s.execute(
            text(
                "INSERT INTO order_lines (tenant_id, order_id, product_id, output_type, state, ended_at) "
                "VALUES (:t, :o, :p, :type, :state, now() - interval '10 minutes')"
            ),
            [
                {"t": tenant_id, "o": order, "p": product_id, "type": f"still-{n}", "state": state}
                for n, state in enumerate(["failed"] * failed + ["completed"] * completed)
            ],
        )


def test_watching_alerts_a_failure_rate_and_low_free_space_once_while_dagster_is_away(
    api, world, env, deliverers, tmp_path
):
    acme, beta = world["tenants"]["acme"], world["tenants"]["beta"]
    ended_lines(env, acme, world["products"]["6204-2RS"], failed=4, completed=6)  # 40 %: over 25 %
    ended_lines(env, beta, world["products"]["B-1"], failed=2, completed=8)  # 20 %: under
    dead = DagsterClient(f"http://127.0.0.1:{free_port()}/graphql")
    deliverer = deliverers(dagster=dead)
    deliverer.settings = deliverer.settings.model_copy(  # a media folder not made yet, a volume never large enough
        update={"media_dir": tmp_path / "not-made-yet" / "media", "alert_min_free_gb": 10**9}
    )
    written = deliverer.watch()
    assert len(written) == 2 and deliverer.watch() == []  # once an hour, once a day: not again
    found = {e.type: e for e in events_of(env, written)}
    rate, space = found["alert.failure_rate"], found["alert.disk_space"]
    assert rate.tenant_id == acme and (rate.data["failed"], rate.data["ended"]) == (4, 10)
    assert space.tenant_id is None and 0 < space.data["free_gb"] < 10**9
    deliverer.tick(wait=True)
    ta, ga = as_role(api, world, "ta"), as_role(api, world, "ga")
    rate_title = "Alert: 4 of 10 order lines failed within the last hour (40%; the threshold is 25%)"
    assert [n["title"] for n in inbox(api, ta)["items"]] == [rate_title]  # acme's admin: acme's rate only
    titles = [n["title"] for n in inbox(api, ga)["items"]]  # the system's: both
    assert titles[1] == rate_title and titles[0].startswith("Alert: the media volume has ")


def events_of(env, ids: list[int]) -> list[Event]:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        return list(s.scalars(select(Event).where(Event.id.in_(ids))))
