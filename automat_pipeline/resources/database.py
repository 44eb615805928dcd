"""The domain database as a Dagster resource."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource
from sqlalchemy.orm import Session

from automat_pipeline.db.database import session


class Database(ConfigurableResource):
    """PostgreSQL holding tenants, products and product files (``AUTOMAT_DATABASE_URL``)."""

    url: str

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        s = session(self.url)
        try:
            with s.begin():
                yield s
        finally:
            s.close()
