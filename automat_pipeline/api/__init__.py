"""The orders API: a thin FastAPI app for clients (``automat api``)."""
