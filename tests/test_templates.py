"""Render templates: nothing in a template ever runs (checked against a real template whose scripts
write marker files), the check in Blender, the check job in process, and the API and CLI over the
real database as its role."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trimesh
from conftest import PASSWORD_HASH, as_role, login
from dagster import DagsterInstance
from sqlalchemy import select

from automat_pipeline import tags, templates
from automat_pipeline.blender import blender_command, render_args, run_blender
from automat_pipeline.db.database import session
from automat_pipeline.db.models import RenderTemplate, Tenant, User
from automat_pipeline.defs.partitions import tenant_partitions
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.defs.templates.check import check_template_job
from automat_pipeline.embedded import REPO
from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import OutputType

BLENDER = str(REPO / ".venv-render" / "bin" / "python")
# studio.blend: a world and a sun. scripted.blend: the same, plus a text block registered to run on
# load, a driver whose Python expression writes a file, a Freestyle style module (which Blender runs
# at render time even with auto-run off) and a compositor File Output node (which writes wherever it
# points). meshy.blend: studio plus a cube. outside.blend: studio lit by an image on the host.
MAKE = """
import bpy, sys
folder, markers = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.world = bpy.data.worlds.new("Studio")
key = bpy.data.objects.new("Key", bpy.data.lights.new("Key", "SUN"))
scene.collection.objects.link(key)
bpy.ops.wm.save_as_mainfile(filepath=folder + "/studio.blend")
text = bpy.data.texts.new("x.py")
text.write(f"open({markers!r} + '/text', 'w').write('ran')")
text.use_module = True
driver = key.data.driver_add("energy").driver
driver.type = "SCRIPTED"
driver.expression = f"open({markers!r} + '/driver', 'w').write('ran') * 0 + 3"
scene.render.use_freestyle = True
freestyle = scene.view_layers[0].freestyle_settings
freestyle.mode = "SCRIPT"
style = bpy.data.texts.new("style.py")
style.write(f"open({markers!r} + '/freestyle', 'w').write('ran')")
module = freestyle.modules.new()
module.script, module.use = style, True
compositor = bpy.data.node_groups.new("Compositor", "CompositorNodeTree")
scene.compositing_node_group = compositor
output = compositor.nodes.new("CompositorNodeOutputFile")
output.directory, output.file_name = markers + "/", "output"
output.file_output_items.new("RGBA", "Image")
compositor.links.new(compositor.nodes.new("CompositorNodeRLayers").outputs["Image"], output.inputs["Image"])
bpy.ops.wm.save_as_mainfile(filepath=folder + "/scripted.blend")
bpy.ops.wm.open_mainfile(filepath=folder + "/studio.blend", use_scripts=False)
bpy.ops.mesh.primitive_cube_add()
bpy.ops.wm.save_as_mainfile(filepath=folder + "/meshy.blend")
bpy.ops.wm.open_mainfile(filepath=folder + "/studio.blend", use_scripts=False)
theirs = bpy.data.images.new("Theirs", 4, 4)
theirs.source, theirs.filepath = "FILE", "/srv/media/beta/B-1/still-web.png"
bpy.context.scene.world.node_tree.nodes.new("ShaderNodeTexEnvironment").image = theirs
bpy.ops.wm.save_as_mainfile(filepath=folder + "/outside.blend")
"""
# The control: the same file opened the way Blender opens a trusted file, then rendered.
TRUSTED = """
import bpy, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=True)
bpy.ops.mesh.primitive_cube_add()
camera = bpy.data.objects.new("C", bpy.data.cameras.new("C"))
bpy.context.scene.collection.objects.link(camera)
scene = bpy.context.scene
scene.camera, camera.location, camera.rotation_euler = camera, (0, -6, 0), (1.5708, 0, 0)
scene.render.engine, scene.cycles.samples = "CYCLES", 1
scene.render.resolution_x = scene.render.resolution_y = 16
scene.render.filepath = sys.argv[2]
bpy.ops.render.render(write_still=True)
"""
MARKERS = ("text", "driver", "freestyle", "output.exr")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    folder, markers = tmp_path_factory.mktemp("templates"), tmp_path_factory.mktemp("markers")
    subprocess.run([BLENDER, "-c", MAKE, str(folder), str(markers)], check=True, capture_output=True)
    for marker in markers.iterdir():  # had Blender run them while making the file, the test starts clean
        marker.unlink()
    return {p.stem: p for p in folder.glob("*.blend")} | {"markers": markers}


@pytest.fixture
def resources(env):
    return {
        "database": Database(url=env["AUTOMAT_DATABASE_URL"]),
        "media": MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"]),
        "blender": Blender(executable=env["AUTOMAT_BLENDER"], scripts_dir=env["AUTOMAT_BLENDER_SCRIPTS"]),
    }


def test_a_templates_scripts_never_run_at_check_or_render_but_do_when_trusted(made, tmp_path, resources):
    markers = made["markers"]
    report = resources["blender"].check_template(made["scripted"])
    assert report["valid"] and report["problems"] == []
    kinds = sorted((s["kind"], s["name"]) for s in report["scripts"])
    assert kinds == [("driver", "Key.energy"), ("freestyle", "style.py"), ("text", "style.py"), ("text", "x.py")]
    assert report["warnings"] == [
        "holds 3 scripts (style.py, x.py, Key.energy) that will never run",
        "its compositor's File Output nodes (File Output) are removed",
    ]
    assert sorted(p.name for p in markers.iterdir()) == []

    glb = tmp_path / "box.glb"
    trimesh.creation.box().export(glb)
    still = OutputType(name="s", kind="still", resolution=16, samples=1, engine="cycles", transparent=False)
    arguments = render_args(glb, tmp_path / "s.png", still, template=made["scripted"])
    command = blender_command(BLENDER, str(REPO / "blender"), arguments)
    [result] = run_blender(command, output=tmp_path / "s.png")
    assert result["lighting"] == "template (1 lights, world Studio)" and (tmp_path / "s.png").stat().st_size > 0
    assert sorted(p.name for p in markers.iterdir()) == []

    trusted = subprocess.run(
        [BLENDER, "-c", TRUSTED, str(made["scripted"]), str(tmp_path / "trusted.png")], capture_output=True, text=True
    )
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert sorted(p.name for p in markers.iterdir()) == sorted(MARKERS)  # the same file does run them when trusted


def test_the_check_refuses_meshes_and_what_is_no_blend_file(made, tmp_path, resources):
    meshy = resources["blender"].check_template(made["meshy"])
    assert meshy["meshes"] == ["Cube"] and meshy["lights"] == ["Key"] and meshy["world"] == "Studio"
    assert meshy["problems"] == [
        ["holds_meshes", "meshy.blend holds meshes (Cube); a template is lights, world and settings"]
    ]
    outside = resources["blender"].check_template(made["outside"])
    assert outside["problems"] == [
        [
            "external_files",
            "outside.blend refers to files outside it (/srv/media/beta/B-1/still-web.png); pack them into the .blend "
            "(File > External Data > Pack Resources)",
        ]
    ]
    glb = tmp_path / "box.glb"
    trimesh.creation.box().export(glb)
    still = OutputType(name="s", kind="still", resolution=16, samples=1, engine="workbench")
    arguments = render_args(glb, tmp_path / "s.png", still, template=made["outside"])
    with pytest.raises(AutomatError, match="invalid_template: outside.blend refers to files outside it"):
        run_blender(blender_command(BLENDER, str(REPO / "blender"), arguments), output=tmp_path / "s.png")
    studio = resources["blender"].check_template(made["studio"])
    assert (studio["valid"], studio["problems"], studio["warnings"], studio["saved_with"]) == (True, [], [], "5.0")
    assert studio["render_engine"] and studio["cameras"] == [] and studio["external_files"] == []
    fake = tmp_path / "fake.blend"
    fake.write_bytes(b"BLENDER-v500 but nothing a .blend holds")
    refused = resources["blender"].check_template(fake)
    assert refused["valid"] is False and refused["problems"][0][0] == "not_blend"


def test_the_check_job_records_ok_or_refused_and_swaps_in_what_passed(env, world, made, resources):
    media = Path(env["AUTOMAT_MEDIA_DIR"])
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])

    def upload(source: Path) -> str:
        staged = media / "incoming.part"
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staged)
        digest = hashlib.sha256(staged.read_bytes()).hexdigest()
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            tenant = s.get(Tenant, world["tenants"]["acme"])
            templates.accept(s, tenant, "studio.blend", digest, staged.stat().st_size, staged, media)
        return digest

    def check(digest: str):
        config = {"ops": {"template_check": {"config": {"name": "studio.blend", "sha256": digest}}}}
        return check_template_job.execute_in_process(
            run_config=config, partition_key="acme", instance=instance, resources=resources
        )

    first = upload(made["studio"])
    assert check(first).success
    serving = media / "acme" / "_templates" / "studio.blend"
    assert serving.read_bytes() == made["studio"].read_bytes()
    second = upload(made["meshy"])  # a new version of the name: checked before it replaces the first
    assert serving.read_bytes() == made["studio"].read_bytes()
    assert check(second).success  # a verdict is no failure
    assert serving.read_bytes() == made["studio"].read_bytes()  # refused: the first one still serves
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        versions = {v.sha256: v for v in s.scalars(select(RenderTemplate))}
    assert (versions[first].status, versions[second].status, versions[second].error_class) == (
        "ok",
        "refused",
        "holds_meshes",
    )
    assert versions[second].report["meshes"] == ["Cube"] and versions[second].checked_at
    assert list((media / "acme" / "_templates" / ".pending").iterdir()) == []
    third = upload(made["scripted"])
    assert check(third).success
    assert serving.read_bytes() == made["scripted"].read_bytes()
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [only] = s.scalars(select(RenderTemplate)).all()  # the refused and the replaced version are gone
    assert (only.sha256, only.status, only.report["warnings"][0]) == (
        third,
        "ok",
        "holds 3 scripts (style.py, x.py, Key.energy) that will never run",
    )
    assert check(third).success  # a check nothing waits for any more changes nothing


def test_the_check_is_a_render_step_queued_with_the_tenants_renders():
    assert templates.CHECK_STEP in tags.RENDER_STEPS
    assert tags.queue_tags("acme", [templates.CHECK_STEP]) == {tags.TENANT: "acme", tags.RENDERS: "acme"}


def blend_upload(api, headers: dict, path: Path, name: str | None = None):
    return api.post("/templates", headers=headers, files={"file": (name or path.name, path.read_bytes())})


def run_check(env, resources, name: str, sha256: str) -> None:
    """What the check_template run does on a render host, here in process."""
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    config = {"ops": {"template_check": {"config": {"name": name, "sha256": sha256}}}}
    assert check_template_job.execute_in_process(
        run_config=config, partition_key="acme", instance=instance, resources=resources
    ).success


def test_upload_list_download_use_and_delete_over_the_api(api, world, env, made, resources):
    ta, pm = as_role(api, world, "ta"), as_role(api, world, "pm")
    pending = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "_templates" / ".pending"
    uploaded = blend_upload(api, ta, made["studio"])
    assert uploaded.status_code == 202, uploaded.text
    body = uploaded.json()
    assert (body["name"], body["status"], body["uploaded_by"]) == ("studio.blend", "checking", "ta@acme.example")
    assert "127.0.0.1:9" in body["launch_error"]  # Dagster is down: the check waits, the upload is kept
    assert [p.read_bytes() for p in pending.iterdir()] == [made["studio"].read_bytes()]
    still = {"name": "poster", "kind": "still", "template": "studio.blend"}
    early = api.put("/output-types/poster", headers=ta, json=still)
    assert early.status_code == 422 and "still being checked" in early.json()["detail"]

    run_check(env, resources, "studio.blend", body["sha256"])
    [listed] = api.get("/templates", headers=pm).json()
    assert (listed["status"], listed["report"]["lights"], listed["checked_at"] is not None) == ("ok", ["Key"], True)
    assert api.get("/templates/studio.blend/file", headers=pm).content == made["studio"].read_bytes()
    again = blend_upload(api, ta, made["studio"])  # the version in use: nothing to check
    assert again.status_code == 200 and again.json()["status"] == "ok"
    assert api.put("/output-types/poster", headers=ta, json=still).status_code == 200
    assert api.get("/templates", headers=pm).json()[0]["used_by"] == ["poster"]
    used = api.delete("/templates/studio.blend", headers=ta)
    assert used.status_code == 409 and "used by output type poster" in used.json()["detail"]
    assert api.delete("/output-types/poster", headers=ta).status_code == 204
    assert api.delete("/templates/studio.blend", headers=ta).status_code == 204
    assert api.get("/templates", headers=pm).json() == []
    assert not (Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "_templates" / "studio.blend").exists()
    assert api.get("/templates/studio.blend/file", headers=pm).status_code == 404
    assert api.delete("/templates/studio.blend", headers=ta).status_code == 404


def test_a_refused_template_says_why_and_output_types_cannot_name_it(api, world, env, made, resources):
    ta = as_role(api, world, "ta")
    body = blend_upload(api, ta, made["meshy"], "shiny.blend").json()
    run_check(env, resources, "shiny.blend", body["sha256"])
    [refused] = api.get("/templates", headers=ta).json()
    assert (refused["status"], refused["error_class"]) == ("refused", "holds_meshes")
    assert refused["reason"] == "shiny.blend holds meshes (Cube); a template is lights, world and settings"
    poster = {"name": "poster", "kind": "still", "template": "shiny.blend"}
    named = api.put("/output-types/poster", headers=ta, json=poster)
    assert named.status_code == 422 and "was refused (holds_meshes" in named.json()["detail"]
    missing = api.put("/output-types/poster", headers=ta, json=poster | {"template": "no.blend"})
    assert missing.status_code == 422 and "has no such template" in missing.json()["detail"]
    assert api.get("/templates/shiny.blend/file", headers=ta).status_code == 404


def test_what_is_no_blend_or_too_large_is_refused_and_nothing_stays(api, world, env, made):
    ta = as_role(api, world, "ta")
    templates_dir = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "_templates"
    pdf = api.post("/templates", headers=ta, files={"file": ("studio.blend", b"%PDF-1.7 not a scene")})
    assert pdf.status_code == 415 and "not a .blend file" in pdf.json()["detail"]
    named = api.post("/templates", headers=ta, files={"file": ("studio.txt", made["studio"].read_bytes())})
    assert named.status_code == 422 and "ending in .blend" in named.json()["detail"]
    big = api.post("/templates", headers=ta, files={"file": ("big.blend", b"BLENDER" + b"\0" * (2 << 20))})
    assert big.status_code == 413
    assert [p for p in templates_dir.rglob("*") if p.is_file()] == []
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalars(select(RenderTemplate)).all() == []


def test_another_tenants_template_answers_404_everywhere(api, world, env, made, resources):
    ta = as_role(api, world, "ta")
    sha = blend_upload(api, ta, made["studio"]).json()["sha256"]
    run_check(env, resources, "studio.blend", sha)
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.add(
            User(
                email="ta@beta.example",
                email_normalized="ta@beta.example",
                password_hash=PASSWORD_HASH,
                role="tenant_admin",
                tenant_id=world["tenants"]["beta"],
            )
        )
    as_beta = login(api, "ga@acme.example") | {"X-Tenant-Id": str(world["tenants"]["beta"])}
    for beta in (login(api, "ta@beta.example"), as_beta):
        assert api.get("/templates", headers=beta).json() == []
        assert api.get("/templates/studio.blend/file", headers=beta).status_code == 404
        assert api.delete("/templates/studio.blend", headers=beta).status_code == 404
        named = api.put(
            "/output-types/poster", headers=beta, json={"name": "poster", "kind": "still", "template": "studio.blend"}
        )
        assert named.status_code == 422 and "has no such template" in named.json()["detail"]
    assert api.get("/templates", headers=ta).json()[0]["status"] == "ok"  # untouched


def test_cli_uploads_checks_lists_and_deletes(run, env, world, made, tmp_path):
    home = {"AUTOMAT_HOME": str(tmp_path / "home"), "AUTOMAT_JWT_SECRET": "s" * 40}
    code, out, err = run("template", "upload", str(made["studio"]), "--tenant", "acme", "--json", env=home)
    assert code == 0, err
    assert json.loads(out) | {"sha256": ""} == {"name": "studio.blend", "sha256": "", "status": "ok", "warnings": []}
    code, out, err = run(
        "template", "upload", str(made["meshy"]), "--tenant", "acme", "--name", "studio.blend", env=home
    )
    assert code == 2 and err == (
        "error: holds_meshes: studio.blend holds meshes (Cube); a template is lights, world and settings\n"
    )
    code, out, _ = run("template", "list", "--tenant", "acme", "--json", env=home)
    assert [(t["name"], t["status"]) for t in json.loads(out)["templates"]] == [
        ("studio.blend", "ok"),
        ("studio.blend", "refused"),
    ]
    unknown = run("template", "list", "--tenant", "nobody", env=home)
    assert unknown[0] == 2 and unknown[2].startswith("error: unknown_tenant: ")
    not_blend = tmp_path / "notes.blend"
    not_blend.write_text("hello")
    refused = run("template", "upload", str(not_blend), "--tenant", "acme", env=home)
    assert refused[0] == 2 and refused[2].startswith("error: not_blend: notes.blend is not a .blend file")
    assert run("template", "delete", "studio.blend", "--tenant", "acme", "--json", env=home)[0] == 0
    assert json.loads(run("template", "list", "--tenant", "acme", "--json", env=home)[1])["templates"] == []
