"""Camera framing from the bounding sphere, named positions, and the turntable orbit."""

import math

import bpy
from mathutils import Vector

POSITIONS = {"iso": (1.0, -1.0, 0.8), "front": (0.0, -1.0, 0.15), "top": (0.0, -0.01, 1.0)}  # Z up


def frame_camera(scene, center: Vector, radius: float, position: str):
    """A camera looking from ``position`` whose view the bounding sphere fills; clip planes hug it."""
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    distance = radius / math.sin(camera.data.angle / 2) * 1.05
    direction = Vector(POSITIONS[position]).normalized()
    camera.location = center + direction * distance
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    camera.data.clip_start = max(distance - radius * 2, distance / 1000)
    camera.data.clip_end = distance + radius * 2
    return camera


def turntable(scene, camera, center: Vector, frames: int) -> None:
    """The camera circles the model once in ``frames`` frames, at constant speed."""
    pivot = bpy.data.objects.new("Turntable", None)
    pivot.location = center
    scene.collection.objects.link(pivot)
    camera.parent = pivot
    camera.location = camera.location - center
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene.frame_start, scene.frame_end = 1, frames
    pivot.rotation_euler = (0.0, 0.0, 0.0)
    pivot.keyframe_insert("rotation_euler", index=2, frame=1)
    pivot.rotation_euler = (0.0, 0.0, 2 * math.pi)
    pivot.keyframe_insert("rotation_euler", index=2, frame=frames + 1)  # frame N+1 = frame 1: a seamless loop
