"""The orders API on the real database as its non-owner role: auth, the permission matrix cell by
cell, row-level security on its own, tenant isolation (404), orders, media and uploads."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from conftest import PASSWORD, ROLES, SECRET, as_role, login
from sqlalchemy import text

from automat_pipeline import templates
from automat_pipeline.api.deps import scoped_session
from automat_pipeline.api.security import MATRIX, Permission, Role, access_token
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import MediaAsset, RenderTemplate, Tenant
from automat_pipeline.embedded import api_url


def test_login_refresh_and_rejected_tokens(api, world):
    tokens = api.post("/auth/login", json={"email": "PM@acme.example", "password": PASSWORD}).json()
    claims = jwt.decode(tokens["access_token"], SECRET, algorithms=["HS256"])
    assert (claims["role"], claims["tenant_id"]) == ("project_manager", world["tenants"]["acme"])
    assert api.post("/auth/login", json={"email": "pm@acme.example", "password": "wrong"}).status_code == 401
    refreshed = api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401  # used
    user_id = int(claims["sub"])
    expired = access_token(SECRET, user_id, Role.project_manager, world["tenants"]["acme"], minutes=-1)
    tampered = tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB")
    unsigned = jwt.encode(
        {
            "sub": str(user_id),
            "role": "global_admin",
            "tenant_id": None,
            "exp": datetime.now(UTC).timestamp() + 600,
        },
        None,
        algorithm="none",
    )
    forged = jwt.encode({"sub": str(user_id), "role": "global_admin", "exp": 4102444800}, "guess", algorithm="HS256")
    for token in (expired, tampered, unsigned, forged):
        response = api.get("/orders", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    assert api.get("/orders").status_code == 401


def cell(api, world, headers: dict, permission: Permission, case: str | None = None) -> int:
    """One request that needs exactly ``permission`` (``case``: another one than the first); its status."""
    acme, beta = world["tenants"]["acme"], world["tenants"]["beta"]
    if case:
        return template_cell(api, acme, headers, case)
    if permission is Permission.manage_tenants:
        return api.get("/tenants", headers=headers).status_code
    if permission is Permission.manage_all_users:
        return api.post(
            "/users",
            headers=headers,
            json={"email": "x@beta.example", "password": PASSWORD, "role": "client", "tenant_id": beta},
        ).status_code
    if permission is Permission.manage_tenant_users:
        return api.post(
            "/users",
            headers=headers,
            json={"email": "y@acme.example", "password": PASSWORD, "role": "client", "tenant_id": acme},
        ).status_code
    if permission is Permission.settings:
        return api.get("/settings", headers=headers).status_code
    if permission is Permission.trigger_renders:
        return api.post(
            f"/products/{world['products']['6204-2RS']}/renders", headers=headers, json={"output_type": "thumbnail"}
        ).status_code
    if permission is Permission.own_orders:
        return api.post("/orders", headers=headers).status_code
    theirs = api.post("/orders", headers=login(api, "client2@acme.example")).json()["id"]
    if permission is Permission.view_all_orders:
        return api.get(f"/orders/{theirs}", headers=headers).status_code
    if permission is Permission.reject_orders:
        return api.post(f"/orders/{theirs}/reject", headers=headers, json={"reason": "no"}).status_code
    if permission is Permission.delete_renders:
        with session(api.app.state.owner_url) as s, s.begin():
            media = MediaAsset(
                tenant_id=acme,
                product_id=world["products"]["6204-2RS"],
                asset="still",
                output_type=f"x{theirs}",
                status="failed",
            )
            s.add(media)
            s.flush()
        return api.delete(f"/media/{media.id}", headers=headers).status_code
    if permission is Permission.view_analytics:
        return api.get("/analytics", headers=headers).status_code
    if permission is Permission.view_render_hosts:
        return api.get("/render-hosts", headers=headers).status_code
    raise AssertionError(permission)


def template_cell(api, acme: int, headers: dict, case: str) -> int:
    """A request on the tenant's templates: upload and delete need settings, list and download less."""
    if case == "upload_template":
        return api.post("/templates", headers=headers, files={"file": ("cell.blend", b"BLENDER-v500")}).status_code
    if case == "list_templates":
        return api.get("/templates", headers=headers).status_code
    with session(api.app.state.owner_url) as s, s.begin():  # a checked template to fetch or delete
        s.add(RenderTemplate(tenant_id=acme, name="cell.blend", sha256="0" * 64, size_bytes=12, status="ok"))
    folder = templates.folder(api.app.state.settings.media_dir, "acme")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cell.blend").write_bytes(b"BLENDER-v500")
    if case == "download_template":
        return api.get("/templates/cell.blend/file", headers=headers).status_code
    return api.delete("/templates/cell.blend", headers=headers).status_code


CELLS = [(p, None) for p in Permission] + [
    (Permission.settings, "upload_template"),
    (Permission.settings, "delete_template"),
    (Permission.trigger_renders, "list_templates"),
    (Permission.trigger_renders, "download_template"),
]


@pytest.mark.parametrize("permission,case", CELLS, ids=[case or p.value for p, case in CELLS])
@pytest.mark.parametrize("name", list(ROLES))
def test_permission_matrix_cell(api, world, env, name, permission, case):
    api.app.state.owner_url = env["AUTOMAT_DATABASE_URL"]
    status = cell(api, world, as_role(api, world, name), permission, case)
    if ROLES[name] in MATRIX[permission]:
        assert status not in (401, 403, 404), f"{name} may {permission.value}: got {status}"
    else:  # refused; a foreign tenant's ids are not revealed (404)
        assert status in (403, 404), f"{name} may not {permission.value}: got {status}"


ACCOUNT_OPERATIONS = {  # users and tenants self-service: the permission each operation needs
    "rename a tenant": Permission.manage_tenants,
    "deactivate a user": Permission.manage_tenant_users,
    "change a user's role": Permission.manage_tenant_users,
    "issue a password reset": Permission.manage_tenant_users,
    "list users by role": Permission.manage_tenant_users,
    "make a user global admin": Permission.manage_all_users,
}


def account_cell(api, world, env, headers: dict, operation: str) -> int:
    """One request of ``operation`` (on client2@acme, or tenant beta); its status."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        user = s.scalar(text("SELECT id FROM users WHERE email = 'client2@acme.example'"))
    return {
        "rename a tenant": lambda: api.patch(
            f"/tenants/{world['tenants']['beta']}", headers=headers, json={"name": "B"}
        ),
        "deactivate a user": lambda: api.patch(f"/users/{user}", headers=headers, json={"active": False}),
        "change a user's role": lambda: api.patch(f"/users/{user}", headers=headers, json={"role": "project_manager"}),
        "issue a password reset": lambda: api.post(f"/users/{user}/password-reset", headers=headers),
        "list users by role": lambda: api.get("/users", headers=headers, params={"role": "client"}),
        "make a user global admin": lambda: api.patch(f"/users/{user}", headers=headers, json={"role": "global_admin"}),
    }[operation]().status_code


@pytest.mark.parametrize("operation", list(ACCOUNT_OPERATIONS))
@pytest.mark.parametrize("name", list(ROLES))
def test_account_operations_cell(api, world, env, name, operation):
    status = account_cell(api, world, env, as_role(api, world, name), operation)
    permission = ACCOUNT_OPERATIONS[operation]
    if ROLES[name] in MATRIX[permission]:  # a global admin making one of a tenant's users global admin: 422
        assert status not in (401, 403, 404), f"{name} may {operation}: got {status}"
    else:
        assert status in (403, 404), f"{name} may not {operation}: got {status}"


def test_row_level_security_alone_holds(env, world):
    app_url = api_url(env["AUTOMAT_DATABASE_URL"])
    with scoped_session(app_url, world["tenants"]["acme"]) as s:
        role = s.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).one()
        assert tuple(role) == (False, False)
        assert s.scalar(text("SELECT tableowner FROM pg_tables WHERE tablename = 'products'")) != "automat_app"
        rows = s.execute(text("SELECT pim_id FROM products")).scalars().all()  # no WHERE at all
        assert rows == ["6204-2RS"]
        assert s.execute(text("SELECT slug FROM tenants")).scalars().all() == ["acme"]
        with pytest.raises(Exception, match="row-level security"):
            s.execute(
                text("INSERT INTO orders (tenant_id, status) VALUES (:t, 'draft')"), {"t": world["tenants"]["beta"]}
            )
    with scoped_session(app_url, None) as s:
        assert s.execute(text("SELECT count(*) FROM products")).scalar() == 0  # no tenant set: nothing
    with scoped_session(app_url, world["tenants"]["acme"]) as s:  # the old bypass setting, forced on
        s.execute(text("SELECT set_config('app.bypass_rls', 'on', true)"))
        assert s.execute(text("SELECT count(*) FROM products")).scalar() == 1
        assert (
            s.execute(
                text("SELECT count(*) FROM users WHERE tenant_id IS DISTINCT FROM :t"), {"t": world["tenants"]["acme"]}
            ).scalar()
            == 0
        )
        for secret in (
            "SELECT password_hash FROM users",
            "SELECT token_sha256 FROM refresh_tokens",
            "SELECT email_normalized FROM login_failures",
            "SELECT token_sha256 FROM password_resets",
            "UPDATE users SET password_hash = 'x'",
            "UPDATE tenants SET active = false",
        ):
            with pytest.raises(Exception, match="permission denied"), s.begin_nested():
                s.execute(text(secret))


def test_foreign_tenant_ids_answer_404(api, world):
    order = api.post("/orders", headers=login(api, "client@acme.example")).json()["id"]
    beta = login(api, "client@beta.example")
    assert api.get(f"/orders/{order}", headers=beta).status_code == 404
    assert api.get(f"/products/{world['products']['6204-2RS']}", headers=beta).status_code == 404
    assert api.post(f"/orders/{order}/cancel", headers=beta).status_code == 404
    own = api.get(f"/products/{world['products']['B-1']}", headers=beta)
    assert own.status_code == 200 and own.json()["pim_id"] == "B-1"


def test_order_waits_for_dagster_and_checks_tenant_rules(api, world, env):
    client = login(api, "client@acme.example")
    order = api.post("/orders", headers=client).json()
    assert order["status"] == order["state"] == "draft"
    product = world["products"]["6204-2RS"]
    bad = api.post(
        f"/orders/{order['id']}/lines",
        headers=client,
        json={"product_id": world["products"]["B-1"], "output_type": "still-web"},
    )
    assert bad.status_code == 422  # beta's product
    added = api.post(
        f"/orders/{order['id']}/lines", headers=client, json={"product_id": product, "output_type": "still-web"}
    )
    assert added.status_code == 201 and len(added.json()["lines"]) == 1
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.get(Tenant, world["tenants"]["acme"]).settings = {"render_engines_allowed": ["workbench"]}
    refused = api.post(f"/orders/{order['id']}/submit", headers=client)
    assert (
        refused.status_code == 422 and "renders with cycles; this tenant allows workbench" in refused.json()["detail"]
    )
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.get(Tenant, world["tenants"]["acme"]).settings = {}
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client).json()
    assert submitted["status"] == "submitted" and submitted["state"] == "pending"
    [line] = submitted["lines"]
    assert line["run_id"] is None and "127.0.0.1:9" in line["launch_error"]
    assert api.get("/health").json() == {"database": True, "dagster": False}  # nothing about any tenant
    rejected = api.post(
        f"/orders/{order['id']}/reject", headers=as_role(api, world, "pm"), json={"reason": "wrong bearing"}
    ).json()
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "wrong bearing")
    [line] = rejected["lines"]  # never launched: cancelled with the order, saying why
    assert (line["state"], line["reason"], rejected["state"]) == ("cancelled", "the order was rejected", "rejected")
    assert api.post(f"/orders/{order['id']}/resubmit", headers=client).json()["status"] == "draft"


def test_media_browser_pages_newest_first_and_zips(api, world, env):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "6204-2RS"
    folder.mkdir(parents=True)
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for n in range(5):
            (folder / f"still-{n}.png").write_bytes(b"\x89PNG" + bytes([n]) * 100)
            repository.record_media(
                s,
                world["tenants"]["acme"],
                world["products"]["6204-2RS"],
                "still",
                f"t{n}",
                "completed",
                path=str(folder / f"still-{n}.png"),
            )
            s.flush()
            s.execute(
                text("UPDATE media_assets SET updated_at = now() + make_interval(secs => :n) WHERE output_type = :t"),
                {"n": n, "t": f"t{n}"},
            )
    client = login(api, "client@acme.example")
    first = api.get("/media", headers=client, params={"limit": 2}).json()
    second = api.get("/media", headers=client, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/media", headers=client, params={"limit": 2, "cursor": second["next_cursor"]}).json()
    names = [m["output_type"] for page in (first, second, third) for m in page["items"]]
    assert names == ["t4", "t3", "t2", "t1", "t0"] and third["next_cursor"] is None
    assert api.get("/media", headers=login(api, "client@beta.example")).json()["items"] == []
    ids = [m["id"] for m in first["items"]]
    assert api.get(f"/media/{ids[0]}/file", headers=client).content == b"\x89PNG" + bytes([4]) * 100
    archive = zipfile.ZipFile(io.BytesIO(api.post("/media/download", headers=client, json={"ids": ids}).content))
    assert sorted(archive.namelist()) == [
        f"{world['products']['6204-2RS']}/still-t3.png",
        f"{world['products']['6204-2RS']}/still-t4.png",
    ]
    assert api.post("/media/download", headers=login(api, "client@beta.example"), json={"ids": ids}).status_code == 404


def test_uploads_are_sniffed_named_safely_and_limited(api, world, env):
    client = login(api, "client@acme.example")
    step = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n"
    stored = api.post("/uploads", headers=client, files={"file": ("../../etc/evil name.stp", step)})
    assert stored.status_code == 201, stored.text
    body = stored.json()
    assert (body["filename"], body["kind"], body["status"]) == ("evil name.stp", "step", "received")
    assert (Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme" / "evil name.stp").read_bytes() == step
    assert api.get(f"/uploads/{body['id']}", headers=client).json()["size_bytes"] == len(step)
    assert api.get(f"/uploads/{body['id']}", headers=login(api, "client@beta.example")).status_code == 404
    assert api.post("/uploads", headers=client, files={"file": ("x.stp", b"%PDF-1.7")}).status_code == 415
    big = api.post("/uploads", headers=client, files={"file": ("big.stp", step + b" " * (2 << 20))})
    assert big.status_code == 413 and not (Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme" / "big.stp").exists()
    assert [p.name for p in (Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme").iterdir()] == ["evil name.stp"]


def test_search_finds_own_products_only(api, world):
    """The search runs as the owner (to use its trigram index) but only over the caller's tenant."""
    acme, beta = login(api, "client@acme.example"), login(api, "client@beta.example")
    found = api.get("/products", headers=acme, params={"q": "6204"}).json()
    assert (found["total"], [p["pim_id"] for p in found["items"]]) == (1, ["6204-2RS"])
    assert api.get("/products", headers=beta, params={"q": "6204"}).json()["total"] == 0
    assert api.get("/products", headers=beta, params={"q": "Bearing"}).json()["total"] == 1
    assert api.get("/products", headers=acme, params={"q": "%"}).json()["total"] == 1  # no wildcard injection


def test_values_postgres_cannot_store_are_client_errors(api, world):
    client = login(api, "client@acme.example")
    assert api.post("/media/download", headers=client, json={"ids": [2**63]}).status_code == 422
    pm = as_role(api, world, "ta")
    order = api.post("/orders", headers=client).json()["id"]
    rejected = api.post(f"/orders/{order}/reject", headers=pm, json={"reason": "nul \x00 byte"})
    assert rejected.status_code == 422 and "cannot be stored" in rejected.json()["detail"]


def test_workflows_are_validated_saved_per_tenant_and_planned(api, world):
    client, ta = login(api, "client@acme.example"), as_role(api, world, "ta")
    steps = {s["step"]: s for s in api.get("/workflows/steps", headers=client).json()}
    assert steps["thumbnail"]["upstream"] == ["glb_production"]
    still_only = {"version": 1, "nodes": [{"id": "s", "step": "still", "params": {"output_types": ["still-web"]}}]}
    bad = {
        "version": 1,
        "nodes": [{"id": "s", "step": "still"}, {"id": "m", "step": "step_file"}],
        "edges": [{"from": "s", "to": "m"}],
    }
    assert api.post("/workflows/validate", headers=client, json=bad).json() == {
        "valid": False,
        "errors": ["edge s→m: the asset graph has no edge still → step_file"],
    }
    assert api.put("/workflows/stills", headers=client, json=still_only).status_code == 403
    assert api.put("/workflows/broken", headers=ta, json=bad).status_code == 422
    saved = api.put("/workflows/stills", headers=ta, json=still_only).json()
    assert (saved["name"], saved["revision"]) == ("stills", 1)
    assert api.put("/workflows/stills", headers=ta, json=still_only).json()["revision"] == 2
    assert [w["name"] for w in api.get("/workflows", headers=client).json()] == ["default", "stills"]
    assert api.get("/workflows/stills", headers=login(api, "client@beta.example")).status_code == 404
    plan = api.post("/workflows/stills/plan", headers=client).json()
    assert plan == {
        "selection": ["still"],
        "run_config": {"ops": {"still": {"config": {"output_types": ["still-web"]}}}},
    }
    assert "thumbnail" in api.post("/workflows/default/plan", headers=client).json()["selection"]
    checked = api.post("/workflows/stills/plan", headers=client, json={"product_id": world["products"]["6204-2RS"]})
    assert checked.status_code == 503  # whether glb_production is materialized is Dagster's to say
    down = api.post(
        "/workflows/stills/runs",
        headers=as_role(api, world, "pm"),
        json={"product_ids": [world["products"]["6204-2RS"]]},
    )
    assert down.status_code == 503 and "Dagster does not answer" in down.json()["detail"]
    assert (
        api.post(
            "/workflows/stills/runs",
            headers=as_role(api, world, "pm"),
            json={"product_ids": [world["products"]["B-1"]]},
        ).status_code
        == 404
    )
    assert api.delete("/workflows/stills", headers=ta).status_code == 204


def test_orders_name_a_workflow_that_has_their_steps(api, world):
    client, ta = login(api, "client@acme.example"), as_role(api, world, "ta")
    assert api.post("/orders", headers=client, json={"workflow": "nowhere"}).status_code == 404
    stills = {"version": 1, "nodes": [{"id": "s", "step": "still"}]}
    assert api.put("/workflows/stills", headers=ta, json=stills).status_code == 200
    order = api.post("/orders", headers=client, json={"workflow": "stills"}).json()
    assert order["workflow"] == "stills"
    api.post(
        f"/orders/{order['id']}/lines",
        headers=client,
        json={"product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"},
    )
    refused = api.post(f"/orders/{order['id']}/submit", headers=client)
    assert refused.status_code == 422 and "workflow 'stills' has no thumbnail step" in refused.json()["detail"]


def test_a_cursor_from_elsewhere_is_a_client_error(api, world):
    response = api.get("/media", headers=login(api, "client@acme.example"), params={"cursor": "300000000000.0:0"})
    assert response.status_code == 422 and "invalid cursor" in response.json()["detail"]
