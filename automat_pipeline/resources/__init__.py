"""Each external system behind one ConfigurableResource, configured from the environment."""

from automat_pipeline.resources.blender import Blender
from automat_pipeline.resources.database import Database
from automat_pipeline.resources.media import MediaStore

__all__ = ["Blender", "Database", "MediaStore"]
