"""One error path from the domain to Dagster: an ``AutomatError`` becomes a ``Failure`` with its class.

Steps raise the domain error; ``classified`` logs it as ``[step] <partition>: <class>: <reason>``
and fails the step with ``error_class`` and ``reason`` in the failure's metadata, where the run's
page, the order documents and the alerts read them.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetExecutionContext, Failure

from automat_pipeline.errors import AutomatError, disk_full


def failure(error: AutomatError, **metadata) -> Failure:
    """The Dagster failure of a domain error."""
    return Failure(str(error), metadata={"error_class": error.error_class, "reason": error.reason, **metadata})


@contextmanager
def classified(context: AssetExecutionContext, step: str) -> Iterator[None]:
    """Fail the step with the class and reason of any ``AutomatError`` raised inside the block, or
    ``disk_full`` for a write the full disk refused."""
    try:
        yield
    except (AutomatError, OSError) as raised:
        error = raised if isinstance(raised, AutomatError) else disk_full(raised.filename or ".", raised)
        if error is None:
            raise
        where = context.partition_key if context.has_partition_key else context.run.run_id
        context.log.error(f"[{step}] {where}: {error}")
        raise failure(error) from raised
