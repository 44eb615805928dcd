"""The studio look, unless a tenant's template scene brought its own world, lights and settings.

What the studio is made of, and why:

- **Image-based light**: Blender's bundled ``studio.exr`` (CC0, Poly Haven; ``datafiles/studiolights/
  world``), so every Blender install has it. Its room is dark drapes around two lamps: a metal
  mirrors its surroundings, and bare steel would read near-black. A light-grey cyclorama
  (``CYCLORAMA``, radiance added in every direction) stands for a studio's white walls and sweep.
- **Key, fill and rim area lights** placed relative to the camera and scaled to the model's
  bounding sphere: the same look for a 10 mm washer and a 1 m housing from any camera position;
  on a turntable the rig turns with the camera, as if the product turned under fixed lights.
- **Ground shadow** (the output type's ``ground_shadow``): a shadow-catching plane under the model
  that shows only the shadow, so a transparent PNG keeps a soft shadow when composited on any
  page (see ``ground``). Workbench draws no ground.
- **Backdrop**: what an opaque render (a turntable) shows behind the model: light grey, never the
  HDRI's room.
- **View transform**: see ``view_transform``.
"""

import math
import os

import bpy
from mathutils import Vector

from automat_blender.glb_import import Bounds

HDRI = "studio.exr"
HDRI_STRENGTH = 0.35  # its two low lamps give metals highlights; at full strength they outshine the rig, sideways
HDRI_TURN = 222.5  # degrees, relative to the camera: its brighter lamp on the key light's side (chosen by rendering)
CYCLORAMA = 0.4  # linear radiance added to the HDRI in every direction
BACKDROP = (0.8, 0.8, 0.8, 1.0)  # camera rays of an opaque render
GROUND_SHADOW_REACH = 0.6  # bounding-sphere radii: how far from the model the ground darkens
GROUND_SIZE = 2.5  # the plane's half width in radii: past the shadow's reach it only costs samples
# Occlusion samples per shading point. Cycles traces that many rays per path sample: 4 (its default
# is 16) took a quarter off a still's CPU time, the denoiser evens out the noise. EEVEE scans the
# depth buffer in that many directions and finds less occlusion with fewer: it keeps 16.
GROUND_SHADOW_SAMPLES = {"cycles": 4, "eevee": 16}
# name, azimuth from the camera (degrees, positive: the camera's left), elevation (degrees),
# disk diameter (bounding-sphere radii), irradiance at the model (W/m²), and whether it casts shadows
RIG = (
    ("Key", 45, 55, 2.0, 1.5, True),
    ("Fill", -60, 25, 3.0, 0.6, False),
    ("Rim", 160, 50, 2.0, 1.0, False),
)
LIGHT_DISTANCE = 4.0  # bounding-sphere radii from the model's centre
WORKBENCH_STUDIO_LIGHT = "studio.sl"


def set_up(scene, bounds: Bounds, engine: str, from_template: bool, ground_shadow: bool) -> str:
    """Light the scene; returns what lit it, for the render's metadata."""
    if from_template:
        lights = sum(1 for o in scene.objects if o.type == "LIGHT")
        return f"template ({lights} lights, world {scene.world.name if scene.world else 'none'})"
    scene.world = world(camera_azimuth(scene, bounds))
    rig(scene, bounds)
    shadow = ground_shadow and engine != "workbench"
    if shadow:
        ground(scene, bounds, engine)
    view_transform(scene, engine)
    workbench(scene)
    return f"studio ({HDRI}{', ground shadow' if shadow else ''})"


def camera_azimuth(scene, bounds: Bounds) -> float:
    """The direction from the model towards the camera, about Z: the studio is placed relative to
    the camera, so every camera position sees the same lighting."""
    view = bounds.center - scene.camera.matrix_world.translation
    return math.atan2(-view.y, -view.x)


def world(azimuth: float):
    """The HDRI plus the cyclorama for lighting and reflections; the backdrop for camera rays."""
    world = bpy.data.worlds.new("Studio")  # Blender 5 worlds always have a node tree
    nodes, links = world.node_tree.nodes, world.node_tree.links
    hdri = nodes.new("ShaderNodeTexEnvironment")
    hdri.image = bpy.data.images.load(
        os.path.join(bpy.utils.system_resource("DATAFILES", path="studiolights/world"), HDRI), check_existing=True
    )
    coords, turn = nodes.new("ShaderNodeTexCoord"), nodes.new("ShaderNodeMapping")
    turn.inputs["Rotation"].default_value[2] = math.radians(HDRI_TURN) - azimuth
    links.new(coords.outputs["Generated"], turn.inputs["Vector"])
    links.new(turn.outputs["Vector"], hdri.inputs["Vector"])
    dim = nodes.new("ShaderNodeMix")
    dim.data_type, dim.blend_type = "RGBA", "MULTIPLY"
    dim.inputs["Factor"].default_value = 1.0
    dim.inputs["B"].default_value = (HDRI_STRENGTH,) * 3 + (1,)
    links.new(hdri.outputs["Color"], dim.inputs["A"])
    walls = nodes.new("ShaderNodeMix")
    walls.data_type, walls.blend_type = "RGBA", "ADD"
    walls.inputs["Factor"].default_value = 1.0
    walls.inputs["B"].default_value = (CYCLORAMA, CYCLORAMA, CYCLORAMA, 1.0)
    links.new(dim.outputs["Result"], walls.inputs["A"])
    camera_ray = nodes.new("ShaderNodeLightPath")
    backdrop = nodes.new("ShaderNodeMix")
    backdrop.data_type = "RGBA"
    backdrop.inputs["B"].default_value = BACKDROP
    links.new(camera_ray.outputs["Is Camera Ray"], backdrop.inputs["Factor"])
    links.new(walls.outputs["Result"], backdrop.inputs["A"])
    links.new(backdrop.outputs["Result"], nodes["Background"].inputs["Color"])
    # Cycles samples the world by an importance map; at the image's full 1024 px it cost a quarter
    # of a still's time; at 256 px the lamps are sampled as well (pixels differ by 0.13 of 255 on average).
    world.cycles.sampling_method, world.cycles.sample_map_resolution = "MANUAL", 256
    return world


def rig(scene, bounds: Bounds) -> None:
    """Key, fill and rim: disks aimed at the model, sized and powered for its bounding sphere."""
    camera = scene.camera
    azimuth = camera_azimuth(scene, bounds)
    distance = bounds.radius * LIGHT_DISTANCE
    for name, turn, elevation, diameter, irradiance, shadow in RIG:
        light = bpy.data.lights.new(name, type="AREA")
        light.use_shadow = shadow
        light.shape, light.size = "DISK", diameter * bounds.radius
        light.energy = irradiance * math.pi * distance**2  # an area light's irradiance falls with distance²
        a, e = azimuth + math.radians(turn), math.radians(elevation)
        direction = Vector((math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), math.sin(e)))
        obj = bpy.data.objects.new(name, light)
        obj.location = bounds.center + direction * distance
        obj.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        scene.collection.objects.link(obj)
        if camera.parent:  # a turntable: the rig turns with the camera
            obj.parent = camera.parent
            obj.matrix_parent_inverse = camera.parent.matrix_world.inverted()


def ground(scene, bounds: Bounds, engine: str) -> None:
    """A plane under the model that shows nothing but the model's contact shadow: black where the
    model hides the studio from the ground (ambient occlusion), clear elsewhere.

    Cycles' own shadow catcher catches the lights' shadows, and in this soft studio those fall
    away from the part: 3 px under the 6201 bearing in a 128 px thumbnail it was 2% opaque, this
    plane 34%; with the catcher the part floats. EEVEE has no shadow catcher at all; the same plane works in
    both, so both engines ground the model alike.
    """
    size = bounds.radius * GROUND_SIZE
    mesh = bpy.data.meshes.new("Ground")
    mesh.from_pydata([(-size, -size, 0), (size, -size, 0), (size, size, 0), (-size, size, 0)], [], [(0, 1, 2, 3)])
    plane = bpy.data.objects.new("Ground", mesh)
    plane.location = (bounds.center.x, bounds.center.y, bounds.bottom)
    plane.visible_diffuse = plane.visible_glossy = plane.visible_shadow = False  # only the camera sees it
    scene.collection.objects.link(plane)
    scene.camera.data.clip_end = (scene.camera.matrix_world.translation - bounds.center).length + size * 1.5
    material = bpy.data.materials.new("Ground")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.remove(nodes["Principled BSDF"])
    occlusion = nodes.new("ShaderNodeAmbientOcclusion")
    occlusion.inputs["Distance"].default_value = bounds.radius * GROUND_SHADOW_REACH
    occlusion.samples = GROUND_SHADOW_SAMPLES[engine]
    clear, shade = nodes.new("ShaderNodeBsdfTransparent"), nodes.new("ShaderNodeEmission")
    shade.inputs["Strength"].default_value = 0.0
    mix = nodes.new("ShaderNodeMixShader")
    links.new(occlusion.outputs["AO"], mix.inputs["Fac"])
    links.new(shade.outputs["Emission"], mix.inputs[1])
    links.new(clear.outputs["BSDF"], mix.inputs[2])
    links.new(mix.outputs["Shader"], nodes["Material Output"].inputs["Surface"])
    material.surface_render_method = "BLENDED"
    plane.data.materials.append(material)


def view_transform(scene, engine: str) -> None:
    """Khronos PBR Neutral for Cycles and EEVEE; Standard for Workbench.

    Khronos PBR Neutral (Blender 4.2+) is made for product images: a base colour lit by white light
    comes out as that colour (the brass is the library's brass, the fallback magenta stays
    magenta), and only highlights are compressed, so polished steel's reflections of the lights
    roll off instead of clipping. It is also the tone mapping of web glTF viewers (three.js
    ``NeutralToneMapping``, model-viewer's default), so the viewer GLB looks like the renders.
    AgX, Blender's default, desaturates bright colours (the magenta fallback turns pink) and lifts
    blacks (rubber reads grey); Standard clips highlights. Workbench's studio light is already
    display-referred: Standard shows its colours as they are.
    """
    scene.view_settings.view_transform = "Standard" if engine == "workbench" else "Khronos PBR Neutral"
    scene.view_settings.look = "None"


def workbench(scene) -> None:
    """Workbench: library colours (``materials.py`` gives it the base colour without metallic)
    under the bundled studio light, with specular highlights."""
    shading = scene.display.shading
    shading.light, shading.studio_light = "STUDIO", WORKBENCH_STUDIO_LIGHT
    shading.color_type = "MATERIAL"
    shading.show_specular_highlight = True
