"""One error path from the domain to Dagster: an ``AutomatError`` becomes a ``Failure`` with its class.

Steps raise the domain error; ``classified`` logs it as ``[step] <partition>: <class>: <reason>``
and fails the step with ``error_class`` and ``reason`` in the failure's metadata, where the run's
page, the order documents and the alerts read them. A step that runs for a batch of products
(a range of partitions) goes on past one product's error (``each_product``), materializes the
others and fails naming it (``record_outcomes``, ``batch_failure``).
"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from dagster import AssetExecutionContext, AssetMaterialization, Failure, MetadataValue

from automat_pipeline.errors import AutomatError, disk_full

T = TypeVar("T")


def failure(error: AutomatError, **metadata) -> Failure:
    """The Dagster failure of a domain error."""
    return Failure(str(error), metadata={"error_class": error.error_class, "reason": error.reason, **metadata})


def as_domain_error(raised: AutomatError | OSError) -> AutomatError | None:
    """The domain error of what a step raised: itself, or ``disk_full`` for a write the full disk
    refused; None for any other OS error (a bug to see as it is)."""
    return raised if isinstance(raised, AutomatError) else disk_full(raised.filename or ".", raised)


@contextmanager
def classified(context: AssetExecutionContext, step: str) -> Iterator[None]:
    """Fail the step with the class and reason of any ``AutomatError`` raised inside the block, or
    ``disk_full`` for a write the full disk refused."""
    try:
        yield
    except (AutomatError, OSError) as raised:
        error = as_domain_error(raised)
        if error is None:
            raise
        where = context.partition_key if context.has_partition_key else context.run.run_id
        context.log.error(f"[{step}] {where}: {error}")
        raise failure(error) from raised


def each_product(
    context: AssetExecutionContext,
    step: str,
    work: Callable[[str], T],
    at_once: int = 1,
    stop: Callable[[], None] | None = None,
) -> tuple[dict[str, T], dict]:
    """``work`` for every product (partition) of the run, ``at_once`` at a time: what it returned, and
    the ``AutomatError`` of each product it failed for (logged as ``[step] <partition>: <class>:
    <reason>``); the others go on. ``work`` runs in threads, so it must not log: the results are
    gathered, and logged, here in the step's thread, in partition order. When the step is
    interrupted (its run terminated), ``stop`` tells the work under way to end now, not when done."""
    done, failed = {}, {}
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        futures = {key: pool.submit(work, key) for key in context.partition_keys}
        for key, future in futures.items():
            try:
                done[key] = future.result()
            except (AutomatError, OSError) as raised:
                error = as_domain_error(raised)
                if error is None:
                    pool.shutdown(cancel_futures=True)  # a bug: the products not started yet stay so
                    raise
                context.log.error(f"[{step}] {key}: {error}")
                failed[key] = error
            except BaseException:
                if stop is not None:
                    stop()
                pool.shutdown(cancel_futures=True)
                raise
    return done, failed


def record_outcomes(
    context: AssetExecutionContext, metadata: dict[str, dict[str, dict]], failed: dict[str, AutomatError]
) -> None:
    """Put each product's metadata (by partition, then asset) where Dagster shows it.

    All succeeded: on the step's outputs, scoped to each partition. Some failed in a batch: as a
    materialization of each product that succeeded, since the step is about to fail
    (``batch_failure``) and none of its outputs will be stored. One product that failed alone
    fails the step with its class, as ``classified`` does.
    """
    if failed and len(context.partition_keys) == 1:
        raise failure(next(iter(failed.values())))
    for key, assets in metadata.items():
        for asset, values in assets.items():
            if failed:
                context.log_event(AssetMaterialization(asset_key=asset, partition=key, metadata=values))
            else:
                context.add_asset_metadata(values, asset_key=asset, partition_key=key)


def batch_failure(error_class: str, what: str, failed: dict[str, AutomatError], total: int) -> Failure:
    """The failure of a batch step that failed for some products; ``failed`` (metadata) names them,
    which is how the upload sensor continues the batch for the others."""
    summary = AutomatError(
        error_class, f"{len(failed)} of {total} {what} failed: " + "; ".join(f"{k}: {e}" for k, e in failed.items())
    )
    return failure(summary, failed=MetadataValue.json({key: str(error) for key, error in failed.items()}))
