"""The render script's parts, one module per stage of setting up a scene (run inside Blender)."""


class RenderError(Exception):
    """A reason the render cannot be made, printed as ``error: <class>: <reason>``."""
