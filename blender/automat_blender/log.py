"""Log lines for the operator: to Dagster Pipes when launched by Dagster, always to stderr."""

import sys


class Log:
    def __init__(self, pipes):
        self.pipes = pipes

    def info(self, message: str) -> None:
        if self.pipes:
            self.pipes.log.info(message)
        print(message, file=sys.stderr, flush=True)
