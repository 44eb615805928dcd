"""Lights and world: a studio default, unless a tenant's template scene brought its own."""

import math

import bpy


def studio(scene) -> None:
    """A sun for shape, and a world bright above and dark below for metals to reflect."""
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", type="SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(45), math.radians(15), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")  # Blender 5 worlds always have a node tree
    nodes, links = world.node_tree.nodes, world.node_tree.links
    direction = nodes.new("ShaderNodeTexCoord")
    split = nodes.new("ShaderNodeSeparateXYZ")
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].position, ramp.color_ramp.elements[0].color = 0.35, (0.03, 0.03, 0.035, 1)
    ramp.color_ramp.elements[1].position, ramp.color_ramp.elements[1].color = 0.75, (1.0, 1.0, 1.0, 1)
    to_unit = nodes.new("ShaderNodeMapRange")
    to_unit.inputs["From Min"].default_value = -1.0
    links.new(direction.outputs["Generated"], split.inputs["Vector"])
    links.new(split.outputs["Z"], to_unit.inputs["Value"])
    links.new(to_unit.outputs["Result"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world


def set_up(scene, from_template: bool) -> str:
    """Light the scene; returns what lit it, for the render's metadata."""
    if from_template:
        lights = sum(1 for o in scene.objects if o.type == "LIGHT")
        return f"template ({lights} lights, world {scene.world.name if scene.world else 'none'})"
    studio(scene)
    return "studio"
