"""Events, the activity feed, preferences, webhooks and the audit trail through the API, on the real
database as the API's role: written with their change, scoped to the tenant and, for a client, to
its own orders and uploads; the audit trail can be added to and read, never changed."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, as_role, login
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from automat_pipeline.db.database import session
from automat_pipeline.embedded import api_url
from automat_pipeline.notify.models import Event, EventQueue
from automat_pipeline.notify.preferences import DEFAULTS


def draft(api, headers, world) -> dict:
    order = api.post("/orders", headers=headers).json()
    line = {"product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"}
    return api.post(f"/orders/{order['id']}/lines", headers=headers, json=line).json()


def events_of(env) -> list[tuple]:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        return [
            (e.type, e.subject, e.actor_id, e.owner_id)
            for e in s.scalars(select(Event).order_by(Event.id))
            if not e.type.startswith("order_line.")
        ]


def test_an_event_is_written_with_its_change_and_only_then(api, world, env):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    order = draft(api, client, world)
    api.post(f"/orders/{order['id']}/submit", headers=client)
    subject = f"order:{order['id']}"
    assert api.post(f"/orders/{order['id']}/resubmit", headers=client).status_code == 409  # refused: no event
    api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "wrong bearing"})
    api.post(f"/orders/{order['id']}/resubmit", headers=client)
    client_id, pm_id = order["created_by"], 3
    assert events_of(env) == [
        ("order.submitted", subject, client_id, client_id),
        ("order.rejected", subject, pm_id, client_id),
        ("order.resubmitted", subject, client_id, client_id),
    ]
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        rejected = s.scalar(select(Event).where(Event.type == "order.rejected"))
        queued = set(s.scalars(select(EventQueue.event_id)))
    assert rejected.data == {
        "number": order["number"],
        "reason": "wrong bearing",
        "before": {"status": "submitted"},
        "after": {"status": "rejected"},
    }
    assert rejected.id in queued  # the outbox: the deliverer fans it out
    [line] = [e for e in _all(env) if e.type == "order_line.cancelled"]  # its unlaunched line, cancelled by it
    assert line.subject == f"order_line:{order['lines'][0]['id']}" and line.owner_id == client_id


def _all(env) -> list[Event]:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


def test_changes_of_workflows_settings_output_types_and_users_are_events(api, world, env):
    ta = as_role(api, world, "ta")
    api.put("/workflows/quick", headers=ta, json={"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]})
    api.delete("/workflows/quick", headers=ta)
    api.put("/settings", headers=ta, json=api.get("/settings", headers=ta).json() | {"max_order_size": 7})
    api.put("/output-types/tiny", headers=ta, json={"name": "tiny", "kind": "thumbnail", "resolution": 64})
    api.put("/output-types/tiny", headers=ta, json={"name": "tiny", "kind": "thumbnail", "resolution": 96})
    api.delete("/output-types/tiny", headers=ta)
    api.post("/users", headers=ta, json={"email": "new@acme.example", "password": PASSWORD, "role": "client"})
    found = {(e.type, e.subject): e.data for e in _all(env)}
    assert found[("workflow.saved", "workflow:quick")] == {"revision": 1}
    assert ("workflow.deleted", "workflow:quick") in found
    settings = found[("settings.changed", "settings")]
    assert settings["after"]["max_order_size"] == 7 and settings["before"].get("max_order_size", 500) == 500
    resolutions = [e.data["after"] for e in _all(env) if e.type == "output_type.changed"]
    assert [r["resolution"] for r in resolutions] == [64, 96]
    assert [e.data["before"] for e in _all(env) if e.type == "output_type.changed"][1] == {"resolution": 64}
    assert ("output_type.deleted", "output_type:tiny") in found
    [user] = [e for e in _all(env) if e.type == "user.created"]
    assert user.data["after"] == {"email": "new@acme.example", "role": "client", "active": True}


def test_the_activity_feed_is_the_tenants_and_a_clients_own(api, world, env):
    client, other, pm = login(api, "client@acme.example"), login(api, "client2@acme.example"), as_role(api, world, "pm")
    mine, theirs = draft(api, client, world), draft(api, other, world)
    for order, headers in ((mine, client), (theirs, other)):
        api.post(f"/orders/{order['id']}/submit", headers=headers)
    api.post(f"/orders/{theirs['id']}/reject", headers=pm, json={"reason": "theirs"})
    beta = login(api, "client@beta.example")
    api.post(
        f"/orders/{draft(api, beta, world | {'products': {'6204-2RS': world['products']['B-1']}})['id']}/submit",
        headers=beta,
    )

    def feed(headers, **params) -> list[tuple]:
        page = api.get("/activity", headers=headers, params=params).json()
        return [(e["type"], e["subject"]) for e in page["items"]]

    acme_orders = {f"order:{mine['id']}", f"order:{theirs['id']}"}
    assert {s for t, s in feed(pm) if t.startswith("order.")} == acme_orders  # the tenant's, not beta's
    assert {s for t, s in feed(client) if t.startswith("order.")} == {f"order:{mine['id']}"}
    assert {s for t, s in feed(other) if t.startswith("order.")} == {f"order:{theirs['id']}"}
    assert feed(pm, type="order.rejected") == [("order.rejected", f"order:{theirs['id']}")]
    assert {t for t, _ in feed(pm, subject=f"order:{mine['id']}")} == {"order.submitted"}
    assert feed(client, type="order.rejected") == []
    first = api.get("/activity", headers=pm, params={"limit": 1}).json()
    rest = api.get("/activity", headers=pm, params={"limit": 50, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["items"] + rest["items"]] == [
        e["id"] for e in api.get("/activity", headers=pm).json()["items"]
    ]
    assert api.get("/activity", headers=pm, params={"subject": "order 1; drop"}).status_code == 422


def test_preferences_default_by_role_and_are_kept_per_user(api, world):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    got = api.get("/notifications/preferences", headers=client).json()
    assert got["preferences"] == got["defaults"] == DEFAULTS["client"].model_dump()
    changed = got["preferences"] | {"orders": {"in_app": "daily", "email": "never"}}
    assert api.put("/notifications/preferences", headers=client, json=changed).json()["preferences"] == changed
    assert api.get("/notifications/preferences", headers=client).json()["preferences"] == changed
    assert (
        api.get("/notifications/preferences", headers=pm).json()["preferences"]
        == DEFAULTS["project_manager"].model_dump()
    )
    ga = login(api, "ga@acme.example")  # a global admin, acting on no tenant
    assert api.get("/notifications/preferences", headers=ga).json()["defaults"]["alerts"]["email"] == "immediate"
    assert api.put("/notifications/preferences", headers=ga, json=changed).status_code == 200
    wrong = changed | {"orders": {"in_app": "weekly", "email": "never"}}
    assert api.put("/notifications/preferences", headers=client, json=wrong).status_code == 422


def test_every_preference_and_webhook_field_has_a_help_text(api):
    schemas = api.app.openapi()["components"]["schemas"]
    for name in (
        "Preferences",
        "Channels",
        "WebhookIn",
        "WebhookOut",
        "DeliveryOut",
        "NotificationOut",
        "AuditOut",
        "EventOut",
    ):
        missing = [field for field, spec in schemas[name]["properties"].items() if not spec.get("description")]
        assert missing == [], f"{name}: {missing}"


def test_webhooks_are_the_tenant_admins_and_their_tenants(api, world):
    ta, pm = as_role(api, world, "ta"), as_role(api, world, "pm")
    hook = {"url": "https://erp.example.com/hook", "event_types": ["order.completed", "catalog.imported"]}
    created = api.post("/webhooks", headers=ta, json=hook)
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    assert api.post("/webhooks", headers=pm, json=hook).status_code == 403
    assert api.get("/webhooks", headers=pm).status_code == 403
    hook_id = created.json()["id"]
    replaced = api.put(f"/webhooks/{hook_id}", headers=ta, json=hook | {"active": False}).json()
    assert (
        replaced["active"] is False
        and replaced["secret"] is None
        and replaced["secret_hint"] == created.json()["secret_hint"]
    )
    assert api.post("/webhooks", headers=ta, json=hook | {"event_types": ["alert.gpu_fallback"]}).status_code == 422
    beta_admin = as_role(api, world, "ga") | {"X-Tenant-Id": str(world["tenants"]["beta"])}
    assert api.get("/webhooks", headers=beta_admin).json() == []
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/test")):
        answer = api.request(method, f"/webhooks/{hook_id}{path}", headers=beta_admin, json=hook)
        assert answer.status_code == 404, (method, path)
    types = {t["type"] for t in api.get("/webhooks/event-types", headers=pm).json()}
    assert "order.completed" in types and "alert.gpu_fallback" not in types
    assert api.delete(f"/webhooks/{hook_id}", headers=ta).status_code == 204


def test_a_webhook_url_with_a_bad_port_is_a_client_error(api, world):
    ta = as_role(api, world, "ta")
    for url in ("https://erp.example.com:99999/hook", "https://erp.example.com:http/hook"):
        hook = {"url": url, "event_types": ["order.completed"]}
        answer = api.post("/webhooks", headers=ta, json=hook)
        assert answer.status_code == 422 and "not a URL" in answer.text, (url, answer.text)
    assert api.get("/webhooks", headers=ta).json() == []


def test_every_change_is_audited_with_who_what_and_the_request(api, world, env):
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    order = draft(api, client, world)
    api.post(f"/orders/{order['id']}/submit", headers=client)
    rejected = api.post(f"/orders/{order['id']}/reject", headers=pm | {"X-Request-Id": "req-42"}, json={"reason": "no"})
    assert rejected.headers["X-Request-Id"] == "req-42"
    api.put("/settings", headers=ta, json=api.get("/settings", headers=ta).json() | {"max_order_size": 9})
    api.post("/uploads", headers=client, files={"file": ("screw.stp", b"ISO-10303-21;\nEND-ISO-10303-21;\n")})
    api.post("/workflows/validate", headers=client, json={"version": 1, "nodes": []})  # reads only
    api.post("/media/download", headers=client, json={"ids": []})  # reads only
    api.post("/auth/logout", headers=pm)
    rows = api.get("/audit", headers=ta).json()["items"]
    actions = [(r["action"], r["role"], r["object"]) for r in reversed(rows)]
    assert actions == [
        ("POST /orders", "client", None),
        ("POST /orders/{order_id}/lines", "client", f"order_id={order['id']}"),
        ("POST /orders/{order_id}/submit", "client", f"order:{order['id']}"),
        ("POST /orders/{order_id}/reject", "project_manager", f"order:{order['id']}"),
        ("PUT /settings", "tenant_admin", "settings"),
        ("POST /uploads", "client", None),
        ("POST /auth/logout", "project_manager", None),
    ]
    reject = next(r for r in rows if r["action"].endswith("/reject"))
    assert (
        reject["request_id"] == "req-42" and reject["actor_id"] == 3 and reject["tenant_id"] == world["tenants"]["acme"]
    )
    [change] = reject["summary"]["changes"]
    assert change == {
        "type": "order.rejected",
        "subject": f"order:{order['id']}",
        "before": {"status": "submitted"},
        "after": {"status": "rejected"},
    }
    settings = next(r for r in rows if r["action"] == "PUT /settings")["summary"]["changes"][0]
    assert settings["after"] == {"max_order_size": 9}
    assert all(r["request_id"] for r in rows)


def test_the_audit_trail_is_the_admins_and_their_tenants(api, world, env):
    ta, pm, client = as_role(api, world, "ta"), as_role(api, world, "pm"), login(api, "client@acme.example")
    beta = login(api, "client@beta.example")
    api.post("/orders", headers=client)
    api.post("/orders", headers=client)
    api.post("/orders", headers=beta)
    ga = login(api, "ga@acme.example")
    api.post("/tenants", headers=ga, json={"slug": "gamma", "name": "Gamma"})  # the system's
    assert api.get("/audit", headers=pm).status_code == 403 and api.get("/audit", headers=client).status_code == 403
    acme = api.get("/audit", headers=ta).json()["items"]
    assert {r["tenant_id"] for r in acme} == {world["tenants"]["acme"]} and len(acme) == 2
    everything = api.get("/audit", headers=ga).json()["items"]  # no X-Tenant-Id: every tenant and the system
    assert {r["tenant_id"] for r in everything} == {world["tenants"]["acme"], world["tenants"]["beta"], None}
    only_beta = api.get("/audit", headers=ga, params={"tenant_id": world["tenants"]["beta"]}).json()["items"]
    assert [r["action"] for r in only_beta] == ["POST /orders"]
    page = api.get("/audit", headers=ga, params={"limit": 2}).json()
    rest = api.get("/audit", headers=ga, params={"cursor": page["next_cursor"]}).json()
    assert [r["id"] for r in page["items"] + rest["items"]] == [r["id"] for r in everything]
    assert api.get("/audit", headers=ta, params={"action": "POST /tenants"}).json()["items"] == []
    by_actor = api.get("/audit", headers=ta, params={"actor_id": 4}).json()["items"]
    assert len(by_actor) == 2 and api.get("/audit", headers=ta, params={"actor_id": 3}).json()["items"] == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'nothing'",
        "DELETE FROM audit_log",
        "UPDATE events SET data = '{}'",
        "DELETE FROM events",
    ],
)
def test_the_api_role_adds_to_the_trail_and_never_changes_it(api, world, env, statement):
    api.post("/orders", headers=login(api, "client@acme.example"))
    with session(api_url(env["AUTOMAT_DATABASE_URL"])) as s, s.begin():
        s.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": str(world["tenants"]["acme"])})
        assert (
            s.scalar(text("SELECT count(*) FROM audit_log")) == 1 and s.scalar(text("SELECT count(*) FROM events")) == 0
        )
        s.execute(
            text("INSERT INTO audit_log (tenant_id, role, source, action) VALUES (:t, 'client', 'api', 'x')"),
            {"t": world["tenants"]["acme"]},
        )
        with pytest.raises(ProgrammingError, match="permission denied"):
            s.execute(text(statement))
    with session(api_url(env["AUTOMAT_DATABASE_URL"])) as s, s.begin():
        s.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": str(world["tenants"]["beta"])})
        assert s.scalar(text("SELECT count(*) FROM audit_log")) == 0  # another tenant's rows: none
        with pytest.raises(ProgrammingError, match="row-level security"):
            s.execute(
                text("INSERT INTO audit_log (tenant_id, role, source, action) VALUES (:t, 'client', 'api', 'x')"),
                {"t": world["tenants"]["acme"]},
            )
