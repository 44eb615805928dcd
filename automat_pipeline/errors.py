"""The domain error: one type for every failure with a class, so every entry point reports it alike.

CLI commands print ``error: <class>: <reason>`` and exit 2; pipeline steps fail with the class in
their metadata (``automat_pipeline.defs.failures``), the upload staying where it was; the API
answers with the class and the reason (``automat_pipeline.api.errors``).
"""


class AutomatError(Exception):
    """A failure with a stable, machine-readable ``error_class`` and a one-line ``reason``."""

    def __init__(self, error_class: str, reason: str):
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason


class NotFound(AutomatError):
    """What the caller named does not exist, or is another tenant's: the API answers 404."""

    def __init__(self, reason: str):
        super().__init__("not_found", reason)


class Conflict(AutomatError):
    """The thing is not in a state that allows this, or the name is taken: the API answers 409."""

    def __init__(self, reason: str):
        super().__init__("conflict", reason)
