"""One error type for bad input, so every entry point reports it the same way.

CLI commands print ``error: <class>: <reason>`` and exit 2; assets fail with the same text and
the upload stays where it was.
"""


class InputError(Exception):
    """Input that cannot be processed; ``error_class`` is a stable, machine-readable name."""

    def __init__(self, error_class: str, reason: str):
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason
