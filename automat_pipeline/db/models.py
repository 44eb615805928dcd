"""SQLAlchemy 2 models of the domain; the schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON().with_variant(JSONB(), "postgresql")}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict] = mapped_column(default=dict)  # validated by the code that reads each part
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Product(Base):
    """A catalogue entry: (tenant, pim_id) is its identity, ``tenant|key`` its partition key.

    ``key`` is the PIM-ID made safe for partition keys, paths and tags (see ``keys.product_key``).
    """

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("tenant_id", "pim_id"), UniqueConstraint("tenant_id", "key"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    pim_id: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    category_key: Mapped[str | None] = mapped_column(String(200))
    lagertyp: Mapped[str | None] = mapped_column(String(200))
    step_filename: Mapped[str | None] = mapped_column(String(255))
    source_file: Mapped[str | None] = mapped_column(String(255))  # the workbook that last listed it
    # Part name → material name as the catalogue wrote it; resolving it is the CAD stage's job. Kept on
    # the product row: written by the same upsert, so unchanged assignments cost nothing.
    materials: Mapped[dict] = mapped_column(default=dict)
    attributes: Mapped[dict] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ProductFile(Base):
    """One version of one uploaded file (workbook or STEP), and what became of it.

    Uploads are never moved or deleted: a rejected file stays in the inbox and its row says why.
    """

    __tablename__ = "product_files"
    __table_args__ = (UniqueConstraint("tenant_id", "filename", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # "catalog" | "step"
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # "ok" | "rejected"
    error: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class InboxFile(Base):
    """What the upload sensor last saw of one inbox file (migration 0013): its stat fingerprint and
    sha256, and the sensor tick in which its content last changed; the inbox folder is its tenant's
    (migration 0022: under row-level security)."""

    __tablename__ = "inbox_files"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    changed_tick: Mapped[int] = mapped_column(BigInteger)  # the sensor tick that saw its content change


class MediaRequest(Base):
    """The media chain last requested for a product: its inputs' key and the sensor tick (migration 0013)."""

    __tablename__ = "media_requests"

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))  # migration 0022
    media_key: Mapped[str] = mapped_column(String(64))
    tick: Mapped[int] = mapped_column(BigInteger, index=True)


class CatalogImport(Base):
    """One import of one workbook version: what triggered it, what it changed, what it rejected."""

    __tablename__ = "catalog_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))  # "sensor" | "cli" | "manual" | a run id
    status: Mapped[str] = mapped_column(String(16))  # "ok" | "failed"
    error: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict] = mapped_column(default=dict)
    outcomes: Mapped[dict] = mapped_column(default=dict)  # rejected rows, created/updated/deactivated PIM-IDs
    report_path: Mapped[str | None] = mapped_column(Text)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)  # media runs requested for its products
    dispatch_error: Mapped[str | None] = mapped_column(Text)  # why requesting them failed; retried each tick
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantMaterial(Base):
    """A tenant's own library material, next to the shipped library (same name: the tenant's wins)."""

    __tablename__ = "materials"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    base_color: Mapped[list] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))  # linear RGB
    metallic: Mapped[float] = mapped_column(Float)
    roughness: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")


class MaterialAlias(Base):
    """Part name (exact, or a ``*``/``?`` pattern) → material; checked in ``position`` order."""

    __tablename__ = "material_aliases"
    __table_args__ = (UniqueConstraint("tenant_id", "pattern"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    pattern: Mapped[str] = mapped_column(String(200))
    material_name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)


class TenantOutputType(Base):
    """A tenant's own output type, or its override of a shipped one (same name); ``settings`` are the
    fields of ``automat_pipeline.output_types.OutputType`` other than the name."""

    __tablename__ = "output_types"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict] = mapped_column(default=dict)


class MediaAsset(Base):
    """The latest outcome of one render of a product: ``asset`` is the pipeline step (thumbnail,
    still, turntable, blend_export), ``output_type`` the tenant's output type it followed."""

    __tablename__ = "media_assets"
    __table_args__ = (UniqueConstraint("tenant_id", "product_id", "asset", "output_type"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    asset: Mapped[str] = mapped_column(String(32))
    output_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # "completed" | "failed" | "cancelled"
    path: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(default=dict)  # engine, device, seconds, bytes
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    """A person using the API; ``tenant_id`` is NULL for a global admin and only then."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))  # as the user wrote it
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)  # security.normalize_email
    # argon2id; the API's role may write it but never read it (migration 0010): loaded only when asked
    password_hash: Mapped[str] = mapped_column(Text, deferred=True)
    role: Mapped[str] = mapped_column(String(32))  # global_admin | tenant_admin | project_manager | client
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_version: Mapped[int] = mapped_column(default=0)  # raised to refuse every token issued before
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshToken(Base):
    """A refresh token, stored as its hash; each is used once (rotation), and a used one that comes
    back revokes its whole family (every token rotated from the same login)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Order(Base):
    """A client's render order: draft → submitted, then cancelled or rejected (back to draft on resubmit)."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(32))  # ORD-<year>-<six digits>, per tenant (repository.order_number)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    workflow: Mapped[str | None] = mapped_column(String(64))  # None: each line renders its output type alone
    reject_reason: Mapped[str | None] = mapped_column(Text)
    rejected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderLine(Base):
    """One product × output type of an order; ``run_id`` once its Dagster run is launched (a line
    launched in a batch has ``batch_id``, its backfill, until the run for its product starts). Its state
    and outcome are kept here (the API sets pending, queued, cancelled; the pipeline's
    ``order_lines`` sensor running, completed, failed, cancelled), so the job document needs no
    Dagster to answer."""

    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "product_id", "output_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    output_type: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(64))
    launch_error: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    error_class: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int | None] = mapped_column()  # percent, while a render runs
    outputs: Mapped[list] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=list)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())
    launch_attempts: Mapped[int] = mapped_column(default=0)  # failed launches (api.launcher: backoff, then failed)
    launch_attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the last failed one


class OrderNumber(Base):
    """The last order number a tenant drew in a year."""

    __tablename__ = "order_numbers"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last: Mapped[int] = mapped_column()


class OrderHistory(Base):
    """What happened to an order, appended: submitted (with its lines), rejected (with the reason),
    resubmitted, cancelled, a line cancelled, a line retried (its run's worker was lost)."""

    __tablename__ = "order_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    by_user: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    reason: Mapped[str | None] = mapped_column(Text)
    lines: Mapped[list] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=list)


class Upload(Base):
    """A file a client posted through the API into the tenant's inbox."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # "catalog" | "step"
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SavedWorkflow(Base):
    """A tenant's workflow document; ``revision`` counts its saves."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(default=1)
    document: Mapped[dict] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RenderHost(Base):
    """A render host's GPU status: what its last probe found (at the warm-up, and in every Cycles
    render that asked for the GPU), whether its kernel cache is warm, and the renders it served."""

    __tablename__ = "render_hosts"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # AUTOMAT_RENDER_HOST
    device: Mapped[str | None] = mapped_column(String(200))  # "NVIDIA H100 80GB HBM3", or "CPU"
    backend: Mapped[str | None] = mapped_column(String(32))  # OPTIX, CUDA, …, CPU
    driver: Mapped[str | None] = mapped_column(String(200))
    probed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    probe: Mapped[dict] = mapped_column(default=dict)  # the last probe's report: device, backend, fallback_reason
    cache_warm: Mapped[bool] = mapped_column(Boolean, default=False)
    warmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    gpu_renders: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_renders: Mapped[int] = mapped_column(BigInteger, default=0)
    last_render_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RenderTemplate(Base):
    """One uploaded version of a tenant's template scene (``automat_pipeline.templates``): checking,
    then ok (the version renders use) or refused (with the class and reason). A name has at most one
    ok version; a newer upload is checked before it replaces it."""

    __tablename__ = "render_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="checking")  # checking | ok | refused
    error_class: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict] = mapped_column(default=dict)  # what blender/check_template.py found
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(64))  # the check's Dagster run, once launched
    launch_error: Mapped[str | None] = mapped_column(Text)
    launch_attempts: Mapped[int] = mapped_column(default=0)  # launches Dagster refused
