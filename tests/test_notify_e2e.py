"""Notifications end to end on the real stack (``automat ui``: webserver, daemon, API and deliverer
over the embedded PostgreSQL), a real SMTP server and a webhook receiver on loopback: an import with
a rejected row reaches the tenant's admins, an order rendered through Dagster with one failing line
yields one summary per recipient by their preferences (the failure's class and reason in it), one
e-mail and one signed webhook, however many more ticks the sensors make. (A restarted daemon's
sensors, with or without their cursors: test_notify_pipeline.)"""

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES, free_port, fresh_home_env, wait_for
from loopback import Mailbox, Receiver
from openpyxl import Workbook

from automat_pipeline.notify import webhooks

pytestmark = pytest.mark.slow
PASSWORD = "a long enough password"


def http(method: str, url: str, body: dict | None = None, token: str | None = None):
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except OSError:
        return None


def start(automat: str, env: dict, api: str) -> subprocess.Popen:
    ui = subprocess.Popen(
        [automat, "ui", "--port", str(free_port()), "--api-port", api.rsplit(":", 1)[1]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for("the stack", lambda: ui.poll() is None and (h := http("GET", f"{api}/health")) and h["dagster"], 180)
    return ui


def stop(ui: subprocess.Popen) -> None:
    if ui.poll() is None:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            ui.kill()


def test_an_order_through_dagster_notifies_each_recipient_once(tmp_path: Path):
    home = tmp_path / "home"
    automat = str(Path(sys.executable).parent / "automat")
    with Mailbox(tls_dir=tmp_path, login=("automat", "smtp password")) as mailbox, Receiver() as receiver:
        env = fresh_home_env(home) | {
            "AUTOMAT_SMTP_URL": mailbox.url(),
            "AUTOMAT_MAIL_FROM": "automat@acme.example",
            "AUTOMAT_WEBHOOK_PRIVATE_NETWORKS": "true",
        }
        subprocess.run([automat, "tenant", "create", "acme"], env=env, check=True, capture_output=True)
        for role, email in (
            ("client", "client@acme.example"),
            ("project_manager", "pm@acme.example"),
            ("tenant_admin", "ta@acme.example"),
        ):
            subprocess.run(
                [automat, "user", "create", "--tenant", "acme", "--role", role, "--email", email],
                env=env | {"AUTOMAT_USER_PASSWORD": PASSWORD},
                check=True,
                capture_output=True,
            )
        api = f"http://127.0.0.1:{free_port()}"
        ui = start(automat, env, api)
        try:
            tokens = {
                name: http("POST", f"{api}/auth/login", {"email": f"{name}@acme.example", "password": PASSWORD})[
                    "access_token"
                ]
                for name in ("client", "pm", "ta")
            }
            prefs = http("GET", f"{api}/notifications/preferences", token=tokens["pm"])["preferences"]
            http(
                "PUT",
                f"{api}/notifications/preferences",
                prefs | {"orders": {"in_app": "immediate", "email": "never"}},
                tokens["pm"],
            )
            hook = http(
                "POST", f"{api}/webhooks", {"url": receiver.url, "event_types": ["order.completed"]}, tokens["ta"]
            )
            broken = {"name": "broken", "kind": "still", "timeout_seconds": 0.5}  # Blender cannot even start in time
            assert http("PUT", f"{api}/output-types/broken", broken, tokens["ta"])["name"] == "broken"
            inbox = home / "uploads" / "acme"
            book = Workbook()
            for row in (["PIM-ID", "Name", "CAD-Datei"], ["SCREW-1", "Screw", "screw.step"], ["NO-NAME", None, None]):
                book.active.append(row)
            book.save(inbox / "products.xlsx")
            shutil.copyfile(STEP_FIXTURES / "occt" / "screw.step", inbox / "screw.step")

            def notes(name: str) -> list[dict]:
                return (http("GET", f"{api}/notifications", token=tokens[name]) or {"items": []})["items"]

            [imported] = wait_for(
                "the import summary", lambda: [n for n in notes("ta") if n["kind"] == "import_summary"]
            )
            assert (
                imported["title"]
                == "products.xlsx imported: 2 rows, 1 created, 0 updated, 0 unchanged, 0 deactivated, 1 rejected"
            )

            def converted():
                items = http("GET", f"{api}/products", token=tokens["client"])["items"]
                detail = items and http("GET", f"{api}/products/{items[0]['id']}", token=tokens["client"])
                return detail if detail and any(m["asset"] == "thumbnail" for m in detail["media"]) else None

            product = wait_for("the conversion and thumbnail", converted)
            order = http("POST", f"{api}/orders", token=tokens["client"])
            for output_type in ("thumbnail", "broken"):
                line = {"product_id": product["id"], "output_type": output_type}
                http("POST", f"{api}/orders/{order['id']}/lines", line, tokens["client"])
            submitted = http("POST", f"{api}/orders/{order['id']}/submit", token=tokens["client"])
            assert all(line["run_id"] for line in submitted["lines"]), submitted
            title = f"{order['number']} finished: 1 of 2 succeeded, 1 failed (1 timeout)"
            [summary] = wait_for(
                "the client's summary", lambda: [n for n in notes("client") if n["kind"] == "order_summary"]
            )
            assert summary["title"] == title and "SCREW-1 broken: timeout: " in summary["body"]
            [pm_summary] = [n for n in notes("pm") if n["kind"] == "order_summary"]
            assert pm_summary["title"] == title
            [mail] = mailbox.wait(1)
            [delivered] = receiver.wait(1)
            time.sleep(12)  # more sensor ticks and deliverer rounds: nothing more
            feed = http("GET", f"{api}/activity", token=tokens["pm"])["items"]
            assert [len(notes(name)) for name in ("client", "pm")] == [1, 1]
        finally:
            stop(ui)
        assert len(mailbox.messages) == 1 and len(receiver.requests) == 1
        assert (mail["To"], mail["Subject"].strip()) == ("client@acme.example", f"[Automat] {title}")
        assert "timeout" in mail.get_content() and mailbox.logins == ["automat"]
        headers = delivered.headers
        assert webhooks.verify(
            hook["secret"], headers["Automat-Timestamp"], headers["Automat-Signature"], delivered.body
        )
        assert json.loads(delivered.body)["data"]["failures"] == {"timeout": 1}
        assert [e["type"] for e in feed].count("order.completed") == 1
