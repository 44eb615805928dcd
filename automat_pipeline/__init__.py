"""Automat: the Dagster code location that turns product lists and STEP files into media."""
