"""Load the model into a fresh scene: the studio default, or a tenant's template .blend."""

from typing import NamedTuple

import bpy
from mathutils import Vector

from automat_blender import RenderError
from automat_blender.template import load_template


def import_glb(path: str, template: str | None = None) -> list:
    """The model's mesh objects, smooth-shaded, in an empty scene or in ``template``'s scene.

    The glTF importer turns glTF's Y-up metres into Blender's Z-up metres.
    """
    if template:
        load_template(template)  # scripts disabled; refused if it holds meshes or refers to outside files
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if not meshes:
        raise RenderError(f"empty_model: {path} contains no meshes")
    for obj in meshes:
        for poly in obj.data.polygons:
            poly.use_smooth = True
    return meshes


class Bounds(NamedTuple):
    """The model's bounding sphere and the height of its lowest point, in world space (Z up)."""

    center: Vector
    radius: float
    bottom: float


def bounds(meshes: list) -> Bounds:
    corners = [o.matrix_world @ Vector(c) for o in meshes for c in o.bound_box]
    lo = Vector(min(c[i] for c in corners) for i in range(3))
    hi = Vector(max(c[i] for c in corners) for i in range(3))
    return Bounds((lo + hi) / 2, max((hi - lo).length / 2, 1e-6), lo.z)
