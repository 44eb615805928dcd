"""The CLI contract: exit 2 with one ``error: <class>: <reason>`` line on bad input, never a traceback.

Most cases call ``cli.main`` in this process (``run``); one case per command group runs the real
``automat`` command in a child process (``automat``), so the entry point, signals and file
descriptors are covered too.
"""

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORD, STEP_FIXTURES, fresh_home_env, login
from openpyxl import Workbook
from sqlalchemy import make_url, text

from automat_pipeline.db.database import engine
from automat_pipeline.embedded import REPO

SCREW = STEP_FIXTURES / "occt" / "screw.step"


def automat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "automat_pipeline.cli", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    "content,error_class",
    [
        (lambda: SCREW.read_bytes()[: SCREW.stat().st_size // 2], "truncated"),
        (lambda: b"", "not_step"),
        (lambda: b"%PDF-1.7\n", "not_step"),
    ],
    ids=["half-a-step-file", "empty", "a-pdf"],
)
def test_cad_convert_bad_input(run, tmp_path, content, error_class):
    (tmp_path / "in.step").write_bytes(content())
    code, out, err = run("cad", "convert", str(tmp_path / "in.step"), "-o", str(tmp_path / "out.glb"), "--json")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {error_class}: ") and err.count("\n") == 1
    assert not (tmp_path / "out.glb").exists()


def test_cad_convert_json_is_one_object(tmp_path):
    done = automat("cad", "convert", str(SCREW), "-o", str(tmp_path / "s.glb"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["triangles"] > 0 and result["glb_bytes"] == (tmp_path / "s.glb").stat().st_size
    assert set(result["seconds"]) == {"read", "transfer", "mesh", "metadata", "write"}


def test_cad_convert_timeout_is_a_classified_error(run, tmp_path):
    big = STEP_FIXTURES / "analysis-situs" / "repatch-hpdc.stp"
    code, _, err = run("cad", "convert", str(big), "-o", str(tmp_path / "b.glb"), "--timeout", "0.05")
    assert code == 2 and err.startswith("error: timeout: repatch-hpdc.stp")


def test_render_thumbnail_bad_input(tmp_path):
    done = automat("render", "thumbnail", str(SCREW), "-o", str(tmp_path / "t.png"))
    assert done.returncode == 2
    assert done.stderr == "error: not_glb: screw.step is not a binary glTF (.glb) file\n"


def test_render_without_blender_names_the_executable(run, tmp_path):
    (tmp_path / "m.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))
    code, _, err = run(
        "render",
        "thumbnail",
        str(tmp_path / "m.glb"),
        "-o",
        str(tmp_path / "t.png"),
        env={"AUTOMAT_BLENDER": str(tmp_path / "no-blender")},
    )
    assert code == 2
    assert err == (
        f"error: missing_blender: cannot start Blender '{tmp_path / 'no-blender'}' "
        "(AUTOMAT_BLENDER): No such file or directory\n"
    )


def test_render_still_names_the_output_types_it_knows(run, tmp_path):
    (tmp_path / "m.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))
    code, _, err = run(
        "render", "still", str(tmp_path / "m.glb"), "--output-type", "poster", "-o", str(tmp_path / "s.png")
    )
    assert code == 2
    assert err == "error: unknown_output_type: no still output type 'poster'; known: still-web\n"


def test_catalog_check_reports_rows_and_writes_nothing(tmp_path):
    wb = Workbook()
    for row in (["PIM-ID", "Name"], ["P-1", "one"], ["P-2", None]):
        wb.active.append(row)
    wb.save(tmp_path / "l.xlsx")
    before = sorted(tmp_path.iterdir())
    done = automat("catalog", "check", str(tmp_path / "l.xlsx"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["pim_id"] for r in result["accepted"]] == ["P-1"]
    assert [r["row"] for r in result["rejected"]] == [3]
    assert sorted(tmp_path.iterdir()) == before


def test_catalog_check_unreadable_workbook(run, tmp_path):
    (tmp_path / "x.xlsx").write_text("not a zip")
    code, _, err = run("catalog", "check", str(tmp_path / "x.xlsx"))
    assert code == 2 and err.startswith("error: not_a_workbook: x.xlsx")


def test_tenant_create_then_catalog_import(tmp_path):
    """On a fresh AUTOMAT_HOME: its own embedded PostgreSQL, Dagster instance and inbox."""
    env = fresh_home_env(tmp_path / "home")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "automat_pipeline.cli", *args], capture_output=True, text=True, env=env
        )

    done = run("tenant", "create", "acme", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"tenant": "acme", "id": 1, "inbox": str(tmp_path / "home/uploads/acme")}
    assert json.loads(run("tenant", "create", "acme", "--json").stdout)["id"] == 1
    bad = run("tenant", "create", "no way")
    assert bad.returncode == 2 and bad.stderr.startswith("error: invalid_key: tenant 'no way'")

    wb = Workbook()
    for row in (["Sachnummer", "Bezeichnung"], ["S-1", "Schraube"], ["S-2", None]):
        wb.active.append(row)
    wb.save(tmp_path / "liste.xlsx")
    imported = run("catalog", "import", str(tmp_path / "liste.xlsx"), "--tenant", "acme", "--json")
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert (result["counts"]["created"], result["counts"]["rejected"]) == (1, 1)
    assert Path(result["report"]).is_file()
    user = run("user", "create", "--role", "tenant_admin", "--email", "ta@acme.example", "--tenant", "acme", "--json")
    assert user.returncode == 2 and user.stderr.startswith("error: weak_password: ")  # stdin was empty
    unknown = run("catalog", "import", str(tmp_path / "liste.xlsx"), "--tenant", "nobody")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown_tenant: ")

    (tmp_path / "m.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))
    still = ["render", "still", str(tmp_path / "m.glb"), "-o", str(tmp_path / "s.png"), "--output-type"]
    unknown = run(*still, "poster", "--tenant", "nobody")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown_tenant: ")
    missing = run(*still, "poster", "--tenant", "acme")
    assert missing.stderr == "error: unknown_output_type: no still output type 'poster'; known: still-web\n"


def test_migrate_in_production_takes_every_setting_from_the_environment(tmp_path, domain_database):
    production = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))} | {
        "AUTOMAT_DEPLOYMENT": "production",
        "AUTOMAT_DATABASE_URL": domain_database,
    }
    refused = automat("migrate", env=production)
    assert refused.returncode == 2 and "AUTOMAT_DATABASE_URL" not in refused.stderr.split("not set:")[1]
    assert refused.stderr.startswith(
        "error: missing_settings: AUTOMAT_DEPLOYMENT=production takes its settings "
        "from the environment; not set: AUTOMAT_DAGSTER_STORAGE_URL, "
    ), refused.stderr
    assert domain_database not in refused.stderr
    production |= {
        "AUTOMAT_DAGSTER_STORAGE_URL": "postgresql+psycopg2://unused",
        "AUTOMAT_JWT_SECRET": "s" * 48,
        "AUTOMAT_API_DATABASE_URL": make_url(domain_database)
        .set(username="automat_app", password="sesame")
        .render_as_string(hide_password=False),
        "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://webserver:3000/graphql",
        "AUTOMAT_UPLOADS_DIR": "/u",
        "AUTOMAT_MEDIA_DIR": "/m",
        "AUTOMAT_BLENDER": "/opt/blender/blender",
        "AUTOMAT_BLENDER_SCRIPTS": "/b",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    migrated = automat("migrate", "--json", env=production)
    assert json.loads(migrated.stdout) == {"deployment": "production", "dagster_home": str(tmp_path / "dagster_home")}
    instance = (tmp_path / "dagster_home" / "dagster.yaml").read_text()
    assert instance == (REPO / "docker" / "dagster.yaml").read_text() and "RoutingRunLauncher" in instance
    assert not (tmp_path / "dagster_home" / "jwt_secret").exists() and "sesame" not in migrated.stdout + migrated.stderr
    with engine(domain_database).connect() as conn:
        assert conn.execute(
            text("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'automat_app'")
        ).scalar()


def test_user_create_checks_its_input_and_refuses_a_taken_address(run, tmp_path, env):
    home = {"AUTOMAT_HOME": str(tmp_path / "home"), "AUTOMAT_JWT_SECRET": "s" * 40}
    with engine(env["AUTOMAT_DATABASE_URL"]).begin() as conn:
        conn.execute(text("INSERT INTO tenants (slug, name, settings) VALUES ('acme', 'ACME', '{}')"))
    weak = run(
        "user",
        "create",
        "--role",
        "client",
        "--email",
        "c@acme.example",
        "--tenant",
        "acme",
        env=home | {"AUTOMAT_USER_PASSWORD": "short"},
    )
    assert weak[0] == 2 and weak[2].startswith("error: weak_password: ")
    strong = home | {"AUTOMAT_USER_PASSWORD": "correct horse battery"}
    admin_with_tenant = run(
        "user", "create", "--role", "global_admin", "--email", "g@x.example", "--tenant", "acme", env=strong
    )
    assert admin_with_tenant[0] == 2 and admin_with_tenant[2].startswith("error: invalid_user: ")
    nobody = run("user", "create", "--role", "client", "--email", "c@x.example", "--tenant", "nobody", env=strong)
    assert nobody[0] == 2 and nobody[2].startswith("error: unknown_tenant: ")
    code, out, err = run(
        "user", "create", "--role", "client", "--email", "C@acme.example", "--tenant", "acme", "--json", env=strong
    )
    assert code == 0, err
    assert json.loads(out) | {"user": 0} == {"user": 0, "email": "C@acme.example", "role": "client", "tenant": "acme"}
    taken = run("user", "create", "--role", "client", "--email", "c@ACME.example", "--tenant", "acme", env=strong)
    assert taken[0] == 2 and taken[2].startswith("error: email_taken: ")
    with engine(env["AUTOMAT_DATABASE_URL"]).connect() as conn:  # the one that created a user, audited
        trail = conn.execute(
            text("SELECT source, role, action, object, actor, summary FROM audit_log WHERE source = 'cli'")
        ).all()
    assert [tuple(row) for row in trail] == [
        (
            "cli",
            "operator",
            "user create",
            f"user:{json.loads(out)['user']}",
            f"cli:{getpass.getuser()}",
            {"after": {"email": "C@acme.example", "role": "client"}},
        )
    ]


def test_materials_and_aliases_from_the_command_line(run, tmp_path, env):
    home = {"AUTOMAT_HOME": str(tmp_path / "home"), "AUTOMAT_JWT_SECRET": "s" * 40}
    with engine(env["AUTOMAT_DATABASE_URL"]).begin() as conn:
        conn.execute(text("INSERT INTO tenants (slug, name, settings) VALUES ('acme', 'ACME', '{}')"))
    zinc = ["--tenant", "acme", "--color", "0.7", "0.7", "0.72", "--metallic", "1", "--roughness", "0.4", "--json"]
    bright = run("material", "set", "ACME_Zinc", *zinc[:2], "--color", "2", "0", "0", *zinc[6:], env=home)
    assert bright[0] == 2 and bright[2].startswith("error: invalid_material: base_color: ")
    code, out, err = run("material", "set", "ACME_Zinc", *zinc, env=home)
    assert code == 0 and json.loads(out) == {"tenant": "acme", "products": 0, "product_ids": []}, err
    unknown = run("alias", "set", "Nut=Unobtainium", "--tenant", "acme", env=home)
    assert unknown[0] == 2 and unknown[2].startswith("error: invalid_aliases: alias 1 ('Nut'): material ")
    assert run("alias", "set", "*Nut*=ACME_Zinc", "Cap=ACME_Zinc", "--tenant", "acme", env=home)[0] == 0
    code, out, _ = run("alias", "list", "--tenant", "acme", "--json", env=home)
    assert json.loads(out)["aliases"] == [
        {"pattern": "*Nut*", "material": "ACME_Zinc"},
        {"pattern": "Cap", "material": "ACME_Zinc"},
    ]
    named = run("material", "delete", "ACME_Zinc", "--tenant", "acme", env=home)
    assert named[0] == 2 and named[2].startswith("error: conflict: 'ACME_Zinc' is named by the aliases '*Nut*', 'Cap'")
    assert run("alias", "set", "--tenant", "acme", env=home)[0] == 0  # no aliases left
    assert run("material", "delete", "ACME_Zinc", "--tenant", "acme", env=home)[0] == 0
    code, out, _ = run("material", "list", "--tenant", "acme", "--json", env=home)
    assert "ACME_Zinc" not in json.loads(out)["materials"] and len(json.loads(out)["materials"]) == 6
    nobody = run("material", "list", "--tenant", "nobody", env=home)
    assert nobody[0] == 2 and nobody[2].startswith("error: unknown_tenant: ")


def test_users_and_tenants_are_administered_from_the_cli(run, tmp_path, api, world):
    home = {"AUTOMAT_HOME": str(tmp_path / "home"), "AUTOMAT_JWT_SECRET": "s" * 40}
    code, out, err = run("user", "list", "--tenant", "acme", "--json", env=home)
    assert code == 0, err
    assert [(u["email"], u["role"], u["tenant"], u["active"]) for u in json.loads(out)["users"]] == [
        ("ta@acme.example", "tenant_admin", "acme", True),
        ("pm@acme.example", "project_manager", "acme", True),
        ("client@acme.example", "client", "acme", True),
        ("client2@acme.example", "client", "acme", True),
    ]
    assert "ga@acme.example  global_admin  -  active" in run("user", "list", env=home)[1]
    client = login(api, "client@acme.example")
    code, out, err = run("user", "deactivate", "--email", "CLIENT@acme.example", "--json", env=home)
    assert (code, json.loads(out)["active"]) == (0, False), err
    assert api.get("/orders", headers=client).status_code == 401  # at once
    assert run("user", "activate", "--email", "client@acme.example", env=home)[0] == 0
    code, out, err = run("user", "role", "--email", "pm@acme.example", "--role", "client", "--json", env=home)
    assert (code, json.loads(out)["role"]) == (0, "client"), err
    last = run("user", "role", "--email", "ta@acme.example", "--role", "client", env=home)
    assert last[0] == 2 and last[2].startswith("error: conflict: the tenant's last active tenant admin")
    admin = run("user", "role", "--email", "ga@acme.example", "--role", "client", env=home)
    assert admin[0] == 2 and admin[2].startswith("error: invalid_user: ")
    nobody = run("user", "deactivate", "--email", "nobody@acme.example", env=home)
    assert nobody[0] == 2 and nobody[2].startswith("error: unknown_user: ")
    code, out, err = run("user", "reset-password", "--email", "client@acme.example", "--json", env=home)
    reset = {"token": json.loads(out)["reset_token"], "new_password": "set from a reset token"}
    assert api.post("/auth/password-reset", json=reset).status_code == 204, err

    code, out, err = run("tenant", "deactivate", "beta", "--json", env=home)
    assert (code, json.loads(out)["active"]) == (0, False), err
    refused = api.post("/auth/login", json={"email": "client@beta.example", "password": PASSWORD})
    assert refused.status_code == 401 and "tenant is deactivated" in refused.json()["detail"]
    assert run("tenant", "list", env=home)[1].splitlines()[1] == f"{world['tenants']['beta']}  beta  beta  inactive"
    assert run("tenant", "activate", "beta", env=home)[0] == 0
    assert login(api, "client@beta.example")
    unknown = run("tenant", "deactivate", "nobody", env=home)
    assert unknown[0] == 2 and unknown[2].startswith("error: unknown_tenant: ")
