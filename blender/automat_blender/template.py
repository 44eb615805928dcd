"""A tenant's template .blend, opened so that nothing in it runs: the one way Blender opens one.

A .blend can carry Python: text blocks registered to run on load, drivers with Python expressions
(and the handlers such scripts register), Freestyle style modules (which Blender runs at render
time even with auto-run off), OSL script nodes (compiled by Cycles when OSL is on). The template is
opened with auto-run off, its Freestyle modules and OSL are switched off, and compositor File
Output nodes (which write files wherever they point) are removed. A template is lights, world and
settings: one holding meshes, or referencing files outside itself (another tenant's renders on the
same host, say), is refused.
"""

import os

import bpy

from automat_blender import RenderError

GEOMETRY = "MESH"


def open_template(path: str) -> dict:
    """Open ``path`` with scripts disabled and disarm what could still run; what it holds.

    Raises ``RuntimeError`` when Blender cannot read it (not a .blend)."""
    bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)
    scripts = _scripts()
    for scene in bpy.data.scenes:
        for layer in scene.view_layers:
            for module in layer.freestyle_settings.modules:
                module.use = False
        if hasattr(scene, "cycles"):
            scene.cycles.shading_system = False  # OSL off: SVM cannot run script nodes
    file_outputs = []
    for tree in _node_trees():
        for node in [n for n in tree.nodes if n.bl_idname == "CompositorNodeOutputFile"]:
            file_outputs.append(node.name)
            tree.nodes.remove(node)
    scene = bpy.context.scene
    objects = list(scene.objects)
    major, minor, subversion = bpy.data.version
    return {
        "saved_with": f"{major}.{minor}",
        "file_subversion": subversion,
        "scene": scene.name,
        "world": scene.world.name if scene.world else None,
        "lights": sorted(o.name for o in objects if o.type == "LIGHT"),
        "cameras": sorted(o.name for o in objects if o.type == "CAMERA"),
        "meshes": sorted(o.name for o in objects if o.type == GEOMETRY),
        "render_engine": scene.render.engine,
        "scripts": scripts,
        "file_outputs": file_outputs,  # removed: they would write wherever they point
        "external_files": sorted(bpy.utils.blend_paths(absolute=True, packed=False, local=False)),
    }


def problems(name: str, facts: dict) -> list[tuple[str, str]]:
    """Why template ``name`` cannot be used, as ``(class, reason)``; empty when it can."""
    found = []
    if facts["meshes"]:
        found.append(
            (
                "holds_meshes",
                f"{name} holds meshes ({', '.join(facts['meshes'][:3])}); a template is lights, world and settings",
            )
        )
    if facts["external_files"]:
        found.append(
            (
                "external_files",
                f"{name} refers to files outside it ({', '.join(facts['external_files'][:3])}); pack them into "
                "the .blend (File > External Data > Pack Resources)",
            )
        )
    return found


def load_template(path: str) -> dict:
    """The template opened for a render; ``RenderError`` (``invalid_template``) if it cannot serve."""
    if not os.path.isfile(path):
        raise RenderError(f"missing_template: {path} does not exist")
    try:
        facts = open_template(path)
    except RuntimeError as error:
        raise RenderError(f"invalid_template: {os.path.basename(path)} is not a readable .blend ({error})") from error
    refused = problems(os.path.basename(path), facts)
    if refused:
        raise RenderError(f"invalid_template: {refused[0][1]}")
    return facts


def _scripts() -> list[dict]:
    """Every piece of Python or shader code the file holds: none of it runs here."""
    found = [{"kind": "text", "name": t.name, "registered": t.use_module} for t in bpy.data.texts]
    for owner in _animated():
        for curve in owner.animation_data.drivers:
            driver = curve.driver
            if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                found.append(
                    {"kind": "driver", "name": f"{owner.name}.{curve.data_path}", "expression": driver.expression}
                )
    for scene in bpy.data.scenes:
        for layer in scene.view_layers:
            for module in layer.freestyle_settings.modules:
                if module.script:
                    found.append({"kind": "freestyle", "name": module.script.name})
    for tree in _node_trees():
        for node in tree.nodes:
            if node.bl_idname == "ShaderNodeScript":
                found.append({"kind": "osl", "name": node.script.name if node.script else node.filepath})
    return found


def _animated() -> list:
    """Every data-block with animation data, node trees inside materials and worlds included."""
    every = {i.as_pointer(): i for i in [*bpy.data.user_map(), *_node_trees()]}
    return [i for i in every.values() if getattr(i, "animation_data", None)]


def _node_trees() -> list:
    trees = list(bpy.data.node_groups)
    for collection in (bpy.data.materials, bpy.data.worlds, bpy.data.lights, bpy.data.scenes):
        trees += [i.node_tree for i in collection if getattr(i, "node_tree", None)]
    return trees
