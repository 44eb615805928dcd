"""Users and tenants self-service on the real database, the API as its role: changes that take
effect on the very next request, what a tenant admin may not do, passwords changed and reset, and
a deactivated tenant whose users are out and whose submitted lines wait until it is reactivated."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import PASSWORD, as_role, free_port, login
from sqlalchemy import text

from automat_pipeline.api.dagster_client import DagsterClient
from automat_pipeline.api.launcher import TENANT_INACTIVE, launch_pending
from automat_pipeline.db.database import engine
from automat_pipeline.embedded import api_url

NEW_PASSWORD = "a new and longer passphrase"


def tokens(api, email: str, password: str = PASSWORD) -> dict:
    response = api.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(issued: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued['access_token']}"}


def user_id(env, email: str) -> int:
    with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:
        return conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar_one()


def test_a_deactivated_user_is_out_on_the_next_request_and_stays_out(api, world, env):
    ta, client = as_role(api, world, "ta"), tokens(api, "client@acme.example")
    assert api.get("/orders", headers=bearer(client)).status_code == 200
    changed = api.patch(f"/users/{user_id(env, 'client@acme.example')}", headers=ta, json={"active": False})
    assert changed.status_code == 200 and changed.json()["active"] is False
    refused = api.get("/orders", headers=bearer(client))  # the access token has not expired
    assert refused.status_code == 401 and refused.json()["detail"] == "this account is deactivated"
    assert api.post("/auth/refresh", json={"refresh_token": client["refresh_token"]}).status_code == 401
    wrong = api.post("/auth/login", json={"email": "client@acme.example", "password": "wrong"})
    right = api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD})
    assert wrong.json()["detail"] == "unknown e-mail or wrong password"  # no more than before
    assert right.status_code == 401 and right.json()["detail"] == "this account is deactivated"
    listed = api.get("/users", headers=ta, params={"active": False}).json()
    assert [u["email"] for u in listed["items"]] == ["client@acme.example"] and listed["total"] == 1
    api.patch(f"/users/{user_id(env, 'client@acme.example')}", headers=ta, json={"active": True})
    assert api.post("/auth/refresh", json={"refresh_token": client["refresh_token"]}).status_code == 401  # revoked
    assert api.get("/orders", headers=bearer(client)).status_code == 401  # signed out, not revived
    assert api.get("/orders", headers=login(api, "client@acme.example")).status_code == 200


def test_a_role_change_means_logging_in_again(api, world, env):
    ta, pm = as_role(api, world, "ta"), tokens(api, "pm@acme.example")
    assert api.get("/analytics", headers=bearer(pm)).status_code == 200
    changed = api.patch(f"/users/{user_id(env, 'pm@acme.example')}", headers=ta, json={"role": "client"})
    assert changed.status_code == 200 and changed.json()["role"] == "client"
    refused = api.get("/orders", headers=bearer(pm))
    assert refused.status_code == 401 and refused.json()["detail"] == "your role changed: log in again"
    assert api.post("/auth/refresh", json={"refresh_token": pm["refresh_token"]}).status_code == 401
    again = tokens(api, "pm@acme.example")
    assert again["role"] == "client" and api.get("/analytics", headers=bearer(again)).status_code == 403


def test_a_tenant_admin_grants_no_global_admin_and_reaches_no_other_tenant(api, world, env):
    ta, ga = as_role(api, world, "ta"), as_role(api, world, "ga")
    client = user_id(env, "client@acme.example")
    assert api.patch(f"/users/{client}", headers=ta, json={"role": "global_admin"}).status_code == 403
    assert api.patch(f"/users/{client}", headers=ga, json={"role": "global_admin"}).status_code == 422
    foreign = {"beta": user_id(env, "client@beta.example"), "global admin": user_id(env, "ga@acme.example")}
    for who, target in foreign.items():
        for method, path, body in (
            ("PATCH", f"/users/{target}", {"active": False}),
            ("PATCH", f"/users/{target}", {"role": "client"}),
            ("POST", f"/users/{target}/password-reset", None),
        ):
            response = api.request(method, path, headers=ta, json=body)
            assert response.status_code == 404, (who, method, path, response.text)
    beta_headers = {**ga, "X-Tenant-Id": str(world["tenants"]["beta"])}
    assert [u["email"] for u in api.get("/users", headers=beta_headers).json()["items"]] == ["client@beta.example"]
    with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:
        states = conn.execute(
            text("SELECT role, active FROM users WHERE id IN (:b, :g) ORDER BY id"),
            {"b": foreign["beta"], "g": foreign["global admin"]},
        )
        assert [tuple(s) for s in states] == [("global_admin", True), ("client", True)]


def test_the_tenants_last_active_tenant_admin_stays_one(api, world, env):
    ta, ga = as_role(api, world, "ta"), as_role(api, world, "ga")
    me = user_id(env, "ta@acme.example")
    for headers in (ta, ga):
        for change in ({"active": False}, {"role": "project_manager"}):
            response = api.patch(f"/users/{me}", headers=headers, json=change)
            assert response.status_code == 409 and "last active tenant admin" in response.json()["detail"]
    second = api.post(
        "/users", headers=ta, json={"email": "ta2@acme.example", "password": PASSWORD, "role": "tenant_admin"}
    ).json()["id"]
    assert api.patch(f"/users/{me}", headers=ta, json={"active": False}).status_code == 200
    assert api.get("/users", headers=ta).status_code == 401  # its own token, at once
    ta2 = login(api, "ta2@acme.example")
    assert api.patch(f"/users/{second}", headers=ta2, json={"role": "client"}).status_code == 409


def test_two_admins_demoting_each_other_at_once_leave_one(live, world, env):
    def headers(email: str) -> dict:
        issued = httpx.post(f"{live}/auth/login", json={"email": email, "password": PASSWORD}).json()
        return {"Authorization": f"Bearer {issued['access_token']}"}

    first_email = "ta@acme.example"
    first = headers(first_email)
    for round in range(3):
        email = f"ta-{round}@acme.example"
        body = {"email": email, "password": PASSWORD, "role": "tenant_admin"}
        assert httpx.post(f"{live}/users", headers=first, json=body).status_code == 201
        second = headers(email)
        ids = {"first": user_id(env, first_email), "second": user_id(env, email)}
        barrier = threading.Barrier(2)

        def demote(caller: dict, target: int, barrier=barrier) -> int:
            barrier.wait()
            return httpx.patch(f"{live}/users/{target}", headers=caller, json={"role": "client"}).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(demote, (first, second), (ids["second"], ids["first"])))
        assert statuses in ([200, 401], [200, 409]), statuses  # 401: the loser was demoted before it was checked
        with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:
            admins = conn.execute(
                text("SELECT email FROM users WHERE role = 'tenant_admin' AND active AND tenant_id = :t"),
                {"t": world["tenants"]["acme"]},
            ).scalars()
            [left] = list(admins)
        first_email, first = left, (first if left == first_email else headers(left))


def test_a_password_change_needs_the_current_one_and_ends_every_other_session(api, world):
    here, elsewhere = tokens(api, "client@acme.example"), tokens(api, "client@acme.example")
    weak = api.post(
        "/auth/password", headers=bearer(here), json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 422
    wrong = api.post(
        "/auth/password", headers=bearer(here), json={"current_password": "not it", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 403 and wrong.json()["detail"] == "the current password is wrong"
    changed = api.post(
        "/auth/password", headers=bearer(here), json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    for old in (here, elsewhere):
        assert api.get("/orders", headers=bearer(old)).status_code == 401
        assert api.post("/auth/refresh", json={"refresh_token": old["refresh_token"]}).status_code == 401
    assert api.get("/orders", headers=bearer(changed.json())).status_code == 200  # this session goes on
    assert api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).status_code == 401
    assert tokens(api, "client@acme.example", NEW_PASSWORD)["role"] == "client"


def test_a_wrong_current_password_counts_toward_the_login_throttle(api, world, env):
    client = bearer(tokens(api, "client@acme.example"))
    body = {"current_password": "a guess", "new_password": NEW_PASSWORD}
    for _ in range(5):
        assert api.post("/auth/password", headers=client, json=body).status_code == 403
    for _ in range(5):
        assert api.post("/auth/login", json={"email": "client@acme.example", "password": "x"}).status_code == 401
    right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    throttled = api.post("/auth/password", headers=client, json=right)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert api.post("/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).status_code == 429
    with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:
        audit = conn.execute(text("SELECT count(*) FROM login_failures WHERE email_normalized = 'client@acme.example'"))
        assert audit.scalar() == 10


def test_a_reset_token_works_once_expires_and_dies_with_a_newer_one(api, world, env):
    ta, client = as_role(api, world, "ta"), user_id(env, "client@acme.example")
    session = tokens(api, "client@acme.example")
    for _ in range(10):  # the account is throttled: the reset lifts it
        api.post("/auth/login", json={"email": "client@acme.example", "password": "x"})
    older = api.post(f"/users/{client}/password-reset", headers=ta).json()["reset_token"]
    issued = api.post(f"/users/{client}/password-reset", headers=ta)
    assert issued.status_code == 201 and issued.json()["expires_at"]
    newer = issued.json()["reset_token"]
    revoked = api.post("/auth/password-reset", json={"token": older, "new_password": NEW_PASSWORD})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    weak = api.post("/auth/password-reset", json={"token": newer, "new_password": "short"})
    assert weak.status_code == 422
    assert api.post("/auth/password-reset", json={"token": newer, "new_password": NEW_PASSWORD}).status_code == 204
    again = api.post("/auth/password-reset", json={"token": newer, "new_password": "yet another passphrase"})
    assert again.status_code == 401 and "used" in again.json()["detail"]
    assert api.get("/orders", headers=bearer(session)).status_code == 401  # every session ended
    assert api.post("/auth/refresh", json={"refresh_token": session["refresh_token"]}).status_code == 401
    assert tokens(api, "client@acme.example", NEW_PASSWORD)["role"] == "client"
    expiring = api.post(f"/users/{client}/password-reset", headers=ta).json()["reset_token"]
    with engine(env["AUTOMAT_DATABASE_URL"]).begin() as conn:
        conn.execute(text("UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE used_at IS NULL"))
    expired = api.post("/auth/password-reset", json={"token": expiring, "new_password": PASSWORD})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    unknown = api.post("/auth/password-reset", json={"token": "made-up", "new_password": PASSWORD})
    assert unknown.status_code == 401 and "unknown" in unknown.json()["detail"]
    api.patch(f"/users/{client}", headers=ta, json={"active": False})
    assert api.post(f"/users/{client}/password-reset", headers=ta).status_code == 409
    with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:
        stored = conn.execute(text("SELECT token_sha256 FROM password_resets")).scalars().all()
    assert stored and not {older, newer, expiring} & set(stored)  # kept as hashes only


def test_a_reset_token_sent_four_times_at_once_works_once(live, world, env):
    issued = httpx.post(f"{live}/auth/login", json={"email": "ta@acme.example", "password": PASSWORD}).json()
    ta = {"Authorization": f"Bearer {issued['access_token']}"}
    reset = httpx.post(f"{live}/users/{user_id(env, 'client@acme.example')}/password-reset", headers=ta).json()
    barrier = threading.Barrier(4)

    def use(n: int) -> int:
        barrier.wait()
        body = {"token": reset["reset_token"], "new_password": f"new passphrase number {n}"}
        return httpx.post(f"{live}/auth/password-reset", json=body, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(use, range(4))) == [204, 401, 401, 401]


class DagsterStandIn(BaseHTTPRequestHandler):
    """Dagster's GraphQL endpoint as the launcher uses it, on loopback: it answers and records each
    launch (its tags), so a test sees what was launched and what was not."""

    launches: list[dict[str, str]]

    def do_POST(self):
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "launchRun" in query["query"]:
            tags = {t["key"]: t["value"] for t in query["variables"]["params"]["executionMetadata"]["tags"]}
            self.launches.append(tags)
            data = {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": f"run-{len(self.launches)}"}}}
        elif "addDynamicPartition" in query["query"]:
            data = {"addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"}}
        elif "runsOrError" in query["query"]:
            data = {"runsOrError": {"results": []}}
        elif "assetOrError" in query["query"]:  # every upstream step is materialized
            data = {"assetOrError": {"assetMaterializations": [{"runId": "earlier"}]}}
        else:
            data = {"version": "stand-in"}
        body = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def dagster():
    handler = type("Handler", (DagsterStandIn,), {"launches": []})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield DagsterClient(f"http://127.0.0.1:{server.server_port}/graphql"), handler.launches
    server.shutdown()


def submitted(api, headers: dict, world, product: str) -> dict:
    order = api.post("/orders", headers=headers).json()
    line = {"product_id": world["products"][product], "output_type": "thumbnail"}
    assert api.post(f"/orders/{order['id']}/lines", headers=headers, json=line).status_code == 201
    return api.post(f"/orders/{order['id']}/submit", headers=headers).json()


def test_a_deactivated_tenant_is_out_and_its_lines_wait_until_it_is_back(api, world, env, dagster):
    client, launches = dagster
    acme, ga = world["tenants"]["acme"], as_role(api, world, "ga")
    user = tokens(api, "client@acme.example")
    order = submitted(api, bearer(user), world, "6204-2RS")  # Dagster is down: pending
    beta = submitted(api, login(api, "client@beta.example"), world, "B-1")
    changed = api.patch(f"/tenants/{acme}", headers=ga, json={"active": False})
    assert changed.json() == {"id": acme, "slug": "acme", "name": "acme", "active": False}
    assert api.get("/orders", headers=bearer(user)).status_code == 401  # at once
    assert api.post("/auth/refresh", json={"refresh_token": user["refresh_token"]}).status_code == 401
    right = api.post("/auth/login", json={"email": "pm@acme.example", "password": PASSWORD})
    wrong = api.post("/auth/login", json={"email": "pm@acme.example", "password": "wrong"})
    assert right.status_code == 401 and right.json()["detail"] == "this account's tenant is deactivated"
    assert wrong.json()["detail"] == "unknown e-mail or wrong password"

    api.app.state.dagster = client  # Dagster answers now
    by_admin = submitted(api, ga, world, "6204-2RS")  # a global admin's order for the tenant waits too
    assert launch_pending(api_url(env["AUTOMAT_DATABASE_URL"]), client) == 1  # beta's only
    assert [t["automat/order"] for t in launches] == [str(beta["id"])]
    quick = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]}
    assert api.put("/workflows/quick", headers=ga, json=quick).status_code == 200
    refused = api.post("/workflows/quick/runs", headers=ga, json={"product_ids": [world["products"]["6204-2RS"]]})
    assert refused.status_code == 409 and "deactivated" in refused.json()["detail"]
    for waiting in (order, by_admin):
        [line] = api.get(f"/orders/{waiting['id']}", headers=ga).json()["lines"]
        assert (line["state"], line["run_id"], line["launch_error"]) == ("pending", None, TENANT_INACTIVE)

    assert api.patch(f"/tenants/{acme}", headers=ga, json={"active": True, "name": "ACME"}).json()["active"]
    [line] = api.get(f"/orders/{order['id']}", headers=ga).json()["lines"]
    assert (line["state"], line["launch_error"]) == ("pending", None)
    assert launch_pending(api_url(env["AUTOMAT_DATABASE_URL"]), client) == 2
    assert sorted(t["automat/order"] for t in launches[1:]) == sorted([str(order["id"]), str(by_admin["id"])])
    for launched in (order, by_admin):
        [line] = api.get(f"/orders/{launched['id']}", headers=ga).json()["lines"]
        assert line["state"] == "queued" and line["run_id"].startswith("run-")
    assert api.get("/orders", headers=bearer(user)).status_code == 401  # signed out, not revived
    assert api.get("/orders", headers=login(api, "client@acme.example")).status_code == 200
    assert [t["name"] for t in api.get("/tenants", headers=ga).json()] == ["ACME", "beta"]


def test_only_global_admins_change_tenants_and_an_unknown_one_is_404(api, world):
    beta = world["tenants"]["beta"]
    for name in ("ta", "pm", "client"):
        assert (
            api.patch(f"/tenants/{beta}", headers=as_role(api, world, name), json={"active": False}).status_code == 403
        )
    assert api.patch("/tenants/99999", headers=as_role(api, world, "ga"), json={"name": "x"}).status_code == 404
    assert api.post("/auth/login", json={"email": "client@beta.example", "password": PASSWORD}).status_code == 200


def test_the_user_list_filters_and_pages(api, world):
    ta = as_role(api, world, "ta")
    everyone = api.get("/users", headers=ta).json()
    assert everyone["total"] == 4 and [u["email"] for u in everyone["items"]][:2] == [
        "ta@acme.example",
        "pm@acme.example",
    ]
    clients = api.get("/users", headers=ta, params={"role": "client"}).json()
    assert [u["email"] for u in clients["items"]] == ["client@acme.example", "client2@acme.example"]
    both = api.get("/users", headers=ta, params={"role": ["client", "project_manager"], "limit": 2, "offset": 1})
    assert both.json()["total"] == 3 and [u["email"] for u in both.json()["items"]] == [
        "client@acme.example",
        "client2@acme.example",
    ]
    found = api.get("/users", headers=ta, params={"q": "CLIENT2@"}).json()
    assert [u["email"] for u in found["items"]] == ["client2@acme.example"]
    assert api.get("/users", headers=ta, params={"q": "%"}).json()["total"] == 0  # no wildcard injection
    assert api.get("/users", headers=ta, params={"q": "beta"}).json()["total"] == 0  # another tenant's
