"""Where uploads arrive and where produced media is written."""

from pathlib import Path

from dagster import ConfigurableResource


class MediaStore(ConfigurableResource):
    """Uploads (``AUTOMAT_UPLOADS_DIR``, read-only to the pipeline) and media (``AUTOMAT_MEDIA_DIR``)."""

    uploads_dir: str
    media_dir: str

    def inbox(self, tenant: str) -> Path:
        return Path(self.uploads_dir) / tenant

    def reports_dir(self, tenant: str) -> Path:
        """Catalogue import reports (.xlsx) for the tenant's operators to download."""
        return Path(self.media_dir) / tenant / "_catalog_reports"

    def templates_dir(self, tenant: str) -> Path:
        """The tenant's .blend template scenes, named by its output types."""
        return Path(self.media_dir) / tenant / "_templates"

    def product_dir(self, tenant: str, product: str) -> Path:
        path = Path(self.media_dir) / tenant / product
        path.mkdir(parents=True, exist_ok=True)
        return path
