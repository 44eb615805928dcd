"""Accounts under attack: login that is no oracle and throttles, tokens that are revoked at once,
e-mail addresses in one normal form, tenant names that are never paths, order rights cell by cell,
and the deployment's maxima above every tenant's settings."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, as_role, login
from sqlalchemy import text

from automat_pipeline.db import repository
from automat_pipeline.db.database import engine, session


def owner(env):
    return engine(env["AUTOMAT_DATABASE_URL"])


def test_an_unknown_address_costs_what_a_wrong_password_costs(api, world):
    def seconds(email: str) -> float:
        started = time.perf_counter()
        assert api.post("/auth/login", json={"email": email, "password": "wrong guess"}).status_code == 401
        return time.perf_counter() - started

    known, unknown = [], []
    for n in range(5):  # in turns, so the machine's drift hits both alike
        known.append(seconds("pm@acme.example"))
        unknown.append(seconds(f"nobody-{n}@acme.example"))
    assert statistics.median(unknown) > 0.6 * statistics.median(known), (known, unknown)


def test_failed_logins_are_recorded_and_throttled_per_account(api, world, env):
    for _ in range(10):
        assert api.post("/auth/login", json={"email": "pm@acme.example", "password": "wrong"}).status_code == 401
    blocked = api.post("/auth/login", json={"email": "PM@acme.example", "password": PASSWORD})  # even the right one
    assert blocked.status_code == 429 and 0 < int(blocked.headers["Retry-After"]) <= 900
    assert login(api, "ta@acme.example")  # other accounts are not held up
    with owner(env).connect() as conn:
        audit = conn.execute(text("SELECT email_normalized, client_address FROM login_failures")).all()
    assert audit == [("pm@acme.example", "testclient")] * 10


def test_failed_logins_are_throttled_per_client_address(api, world):
    for n in range(50):
        api.post("/auth/login", json={"email": f"guess-{n}@acme.example", "password": "wrong"})
    assert api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).status_code == 429


def test_deactivation_and_demotion_take_effect_at_once(api, world, env):
    client, pm = login(api, "client@acme.example"), login(api, "pm@acme.example")
    assert api.get("/orders", headers=client).status_code == 200
    with owner(env).begin() as conn:
        conn.execute(text("UPDATE users SET active = false WHERE email = 'client@acme.example'"))
        conn.execute(text("UPDATE users SET role = 'client' WHERE email = 'pm@acme.example'"))
    assert api.get("/orders", headers=client).status_code == 401
    assert api.get("/analytics", headers=pm).status_code == 401  # the old role's token
    assert api.get("/orders", headers=login(api, "pm@acme.example")).status_code == 200  # the new role, new token
    ta = login(api, "ta@acme.example")
    with owner(env).begin() as conn:
        conn.execute(text("UPDATE tenants SET active = false WHERE slug = 'acme'"))
    assert api.get("/orders", headers=ta).status_code == 401  # a deactivated tenant's users are out
    assert api.post("/auth/login", json={"email": "client2@acme.example", "password": PASSWORD}).status_code == 401


def test_a_replayed_refresh_token_revokes_its_successors(api, world):
    first = api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    second = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    replayed = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replayed.status_code == 401 and "revoked" in replayed.json()["detail"]
    assert api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    other = api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    assert (
        api.post("/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200
    )  # its own family


def test_logout_signs_out_everywhere(api, world):
    tokens = api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    elsewhere = api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert api.post("/auth/logout", headers=headers).status_code == 204
    for issued in (tokens, elsewhere):  # this session and every other one
        assert api.get("/orders", headers={"Authorization": f"Bearer {issued['access_token']}"}).status_code == 401
        assert api.post("/auth/refresh", json={"refresh_token": issued["refresh_token"]}).status_code == 401


def test_an_address_taken_in_another_tenant_answers_as_one_taken_here(api, world):
    ta = as_role(api, world, "ta")
    elsewhere = api.post(
        "/users", headers=ta, json={"email": "CLIENT@beta.example", "password": PASSWORD, "role": "client"}
    )
    here = api.post(
        "/users", headers=ta, json={"email": "client2@ACME.example", "password": PASSWORD, "role": "client"}
    )
    assert (elsewhere.status_code, here.status_code) == (409, 409)
    assert elsewhere.json() == here.json()


@pytest.mark.parametrize("email", ["İlker@acme.example", "ΣΊΣΥΦΟΣ@acme.example", "Straße@acme.example"])
def test_addresses_that_lower_case_differently_still_log_in(api, world, email):
    ta = as_role(api, world, "ta")
    created = api.post("/users", headers=ta, json={"email": email, "password": PASSWORD, "role": "client"})
    assert created.status_code == 201, created.text
    for typed in (email, email.lower(), email.upper()):
        response = api.post("/auth/login", json={"email": typed, "password": PASSWORD})
        assert response.status_code == 200, (typed, response.text)


@pytest.mark.parametrize("slug", ["../../x", "/abs/dir", "acme/../../etc", "a b", ".hidden", "x" * 65])
def test_a_tenant_slug_is_never_a_path(api, world, env, slug):
    ga = login(api, "ga@acme.example")
    response = api.post("/tenants", headers=ga, json={"slug": slug, "name": "Evil"})
    assert response.status_code == 422, response.text
    uploads = Path(env["AUTOMAT_UPLOADS_DIR"])
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_a_tenant_made_over_the_api_has_its_inbox_and_is_listed(api, world, env):
    ga = login(api, "ga@acme.example")
    made = api.post("/tenants", headers=ga, json={"slug": "gamma", "name": "Gamma"})
    assert made.status_code == 201 and (Path(env["AUTOMAT_UPLOADS_DIR"]) / "gamma").is_dir()
    assert api.post("/tenants", headers=ga, json={"slug": "gamma", "name": "Again"}).status_code == 409
    assert [t["slug"] for t in api.get("/tenants", headers=ga).json()] == ["acme", "beta", "gamma"]


def test_concurrent_creates_of_one_name_conflict_cleanly(live, world):
    token = httpx.post(f"{live}/auth/login", json={"email": "ta@acme.example", "password": PASSWORD}).json()
    ta = {"Authorization": f"Bearer {token['access_token']}"}
    output_type = {"name": "poster", "kind": "still", "resolution": 512}
    workflow = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]}
    requests = [
        ("PUT", "/output-types/poster", output_type),
        ("PUT", "/workflows/quick", workflow),
        ("POST", "/users", {"email": "new@acme.example", "password": PASSWORD, "role": "client"}),
    ]
    for method, path, body in requests:

        def send(_: int, method=method, path=path, body=body) -> int:
            return httpx.request(method, live + path, json=body, headers=ta).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(8)))
        assert all(status in (200, 201, 409) for status in statuses), (path, statuses)
        assert any(status in (200, 201) for status in statuses), (path, statuses)
    revisions = httpx.get(f"{live}/workflows/quick", headers=ta).json()["revision"]
    assert revisions == 8  # every save counted, none lost


OWN_ORDER_ACTIONS = ["view", "add_line", "submit", "cancel", "reject", "resubmit"]
# What a role may do with an order another user of its tenant created (README: Orders).
RIGHTS = {
    "client": set(),
    "pm": {"view", "cancel", "reject"},
    "ta": {"view", "cancel", "reject"},
    "ga": {"view", "cancel", "reject"},
}


def attempt(api, world, headers: dict, action: str) -> int:
    """One action on a fresh order of client@acme (a draft with a line, submitted where the action needs it)."""
    creator = login(api, "client@acme.example")
    order = api.post("/orders", headers=creator).json()["id"]
    line = {"product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"}
    api.post(f"/orders/{order}/lines", headers=creator, json=line)
    if action in ("cancel", "reject", "resubmit"):
        assert api.post(f"/orders/{order}/submit", headers=creator).status_code == 200
    if action == "resubmit":
        api.post(f"/orders/{order}/cancel", headers=creator)
    return {
        "view": lambda: api.get(f"/orders/{order}", headers=headers),
        "add_line": lambda: api.post(
            f"/orders/{order}/lines", headers=headers, json=line | {"output_type": "still-web"}
        ),
        "submit": lambda: api.post(f"/orders/{order}/submit", headers=headers),
        "cancel": lambda: api.post(f"/orders/{order}/cancel", headers=headers),
        "reject": lambda: api.post(f"/orders/{order}/reject", headers=headers, json={"reason": "no"}),
        "resubmit": lambda: api.post(f"/orders/{order}/resubmit", headers=headers),
    }[action]().status_code


@pytest.mark.parametrize("action", OWN_ORDER_ACTIONS)
@pytest.mark.parametrize("name", ["client2", "pm", "ta", "ga"])
def test_rights_over_another_users_order_cell_by_cell(api, world, name, action):
    headers = login(api, "client2@acme.example") if name == "client2" else as_role(api, world, name)
    status = attempt(api, world, headers, action)
    allowed = action in RIGHTS["client" if name == "client2" else name]
    assert (status < 400) == allowed, f"{name} {action}: {status}"
    assert status != 500


def test_tenant_settings_cannot_lift_the_deployments_guards(api, world):
    ta = as_role(api, world, "ta")
    current = api.get("/settings", headers=ta).json()
    for section, field, value in (
        ("cad", "timeout_seconds", 3600),
        ("cad", "memory_mb", 16384),
        ("catalog", "max_rows", 1_000_000),
    ):
        lifted = current | {section: current[section] | {field: value}}
        if value <= {"timeout_seconds": 1800, "memory_mb": 8192, "max_rows": 1_000_000}[field]:
            assert api.put("/settings", headers=ta, json=lifted).status_code == 200
            continue
        response = api.put("/settings", headers=ta, json=lifted)
        assert response.status_code == 422 and "over this deployment's maximum" in response.json()["detail"], field
    for field, value in (("resolution", 8192), ("samples", 4096), ("timeout_seconds", 86400)):
        body = {"name": "huge", "kind": "still", field: value}
        response = api.put("/output-types/huge", headers=ta, json=body)
        assert response.status_code == 422 and "AUTOMAT_MAX_" in response.json()["detail"], (field, response.text)
    frames = api.put("/output-types/long", headers=ta, json={"name": "long", "kind": "turntable", "frames": 3600})
    assert frames.status_code == 422


def test_order_documents_show_no_server_paths(api, world, env):
    client = login(api, "client@acme.example")
    order = api.post("/orders", headers=client).json()["id"]
    line = {"product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"}
    line_id = api.post(f"/orders/{order}/lines", headers=client, json=line).json()["lines"][0]["id"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # what a render and the order_lines sensor leave
        details = {"output": "/srv/media/acme/x.png", "engine": "workbench"}
        repository.record_media(
            s,
            world["tenants"]["acme"],
            world["products"]["6204-2RS"],
            "thumbnail",
            "thumbnail",
            "completed",
            path="/srv/media/acme/x.png",
            run_id="run-1",
            details=details,
        )
        s.execute(text("UPDATE order_lines SET run_id = 'run-1', state = 'queued' WHERE id = :l"), {"l": line_id})
        repository.record_line_outcome(
            s, line_id, "run-1", state="completed", outputs=repository.runs_outputs(s, ["run-1"])["run-1"]
        )
    document = api.get(f"/orders/{order}", headers=client)
    assert "/srv/media" not in document.text and '"engine":"workbench"' in document.text
    [output] = document.json()["lines"][0]["outputs"]
    assert output["file"] == f"/media/{output['media_id']}/file"


def test_the_operator_gate_admits_active_global_admins_only(api, world, env):
    assert api.get("/auth/operator").status_code == 401  # no session
    form = api.get("/auth/operator/login", params={"next": "//evil.example/x"})
    assert form.status_code == 200 and 'value="/"' in form.text  # no open redirect
    client = api.post(
        "/auth/operator/login", data={"email": "client@acme.example", "password": PASSWORD}, follow_redirects=False
    )
    assert client.status_code == 403 and "automat_operator" not in client.cookies
    wrong = api.post(
        "/auth/operator/login", data={"email": "ga@acme.example", "password": "wrong"}, follow_redirects=False
    )
    assert wrong.status_code == 401
    admitted = api.post(
        "/auth/operator/login",
        data={"email": "ga@acme.example", "password": PASSWORD, "next": "/runs"},
        follow_redirects=False,
    )
    assert admitted.status_code == 303 and admitted.headers["location"] == "/runs"
    session = admitted.cookies["automat_operator"]
    assert (
        "httponly" in admitted.headers["set-cookie"].lower()
        and "samesite=strict" in admitted.headers["set-cookie"].lower()
    )
    assert api.get("/auth/operator", cookies={"automat_operator": session}).status_code == 204
    bearer = api.get(
        "/orders", headers={"Authorization": f"Bearer {session}", "X-Tenant-Id": str(world["tenants"]["acme"])}
    )
    assert bearer.status_code == 401  # a session is no API token
    with owner(env).begin() as conn:
        conn.execute(
            text("UPDATE users SET role = 'tenant_admin', tenant_id = :t WHERE email = 'ga@acme.example'"),
            {"t": world["tenants"]["acme"]},
        )
    assert api.get("/auth/operator", cookies={"automat_operator": session}).status_code == 401
