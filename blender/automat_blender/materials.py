"""Library materials → Principled BSDF; any part whose material the library lacks gets the fallback.

The production GLB names each part's material after a library entry. The library is passed in
(JSON: name → base_color, metallic, roughness) so a tenant's edits reach renders without
converting the STEP file again.
"""

import json
import re

import bpy

from automat_blender.log import Log


def load_library(path: str) -> tuple[dict, str]:
    """``(materials by name, fallback name)`` from the JSON file the pipeline writes."""
    with open(path) as f:
        data = json.load(f)
    return data["materials"], data["fallback"]


def apply_library(meshes: list, library: dict, fallback: str, log: Log) -> dict:
    """Rebuild every slot's material from the library; returns parts per material name."""
    built: dict[str, bpy.types.Material] = {}
    used: dict[str, int] = {}
    for obj in meshes:
        for slot in obj.material_slots or [None]:
            imported = slot.material.name if slot and slot.material else ""
            name = re.sub(r"\.\d{3}$", "", imported)  # Blender's suffix for a clashing name
            if name not in library:
                log.info(
                    f"[MATERIAL] part {obj.name!r}: {imported or 'no material'!r} is not in the library → {fallback!r}"
                )
                name = fallback
            if name not in built:
                built[name] = _principled(name, library[name])
            if slot is None:
                obj.data.materials.append(built[name])
            else:
                slot.link, slot.material = "OBJECT", built[name]
            used[name] = used.get(name, 0) + 1
    return used


def _principled(name: str, entry: dict) -> bpy.types.Material:
    material = bpy.data.materials.new(f"library:{name}")
    bsdf = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    bsdf.inputs["Base Color"].default_value = (*entry["base_color"], 1.0)
    bsdf.inputs["Metallic"].default_value = entry["metallic"]
    bsdf.inputs["Roughness"].default_value = entry["roughness"]
    # What Workbench shows: it has no surroundings for a metal to mirror and draws metallic = 1
    # near-black, so it gets the base colour as a diffuse colour and the roughness for its highlight.
    material.diffuse_color = (*entry["base_color"], 1.0)
    material.metallic, material.roughness = 0.0, entry["roughness"]
    return material
