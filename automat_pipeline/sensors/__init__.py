"""Sensors: react to uploaded files."""

from automat_pipeline.sensors.uploads import upload_sensor

__all__ = ["upload_sensor"]
