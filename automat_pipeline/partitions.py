"""Partitions: one dynamic set of tenants, one of products keyed ``<tenant>|<product>``.

A single product set keeps exactly the products that exist; a 2-D dynamic multi-partition would
be the cross-product of every tenant with every product.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from dagster import DynamicPartitionsDefinition

from automat_pipeline.errors import InputError

tenant_partitions = DynamicPartitionsDefinition(name="tenants")
product_partitions = DynamicPartitionsDefinition(name="products")

KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SEPARATOR = "|"
TENANT_TAG = "automat/tenant"  # every run of a tenant (set by run_queue.TenantRunCoordinator)
RENDER_TAG = "automat/renders"  # a tenant's runs with a Blender step
RENDER_HOST_TAG = "automat/render-host"  # the render host a render run goes to (run_launcher routes by it)


def check_key_part(kind: str, value: str) -> str:
    """A tenant slug or product id usable in a partition key, file path and run tag."""
    if not KEY_PART.fullmatch(value):
        raise InputError(
            "invalid_key",
            f"{kind} {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return value


def key_for(pim_id: str) -> str:
    """A PIM-ID as a product key: other characters become ``_``; over-long ids keep a hash suffix.

    Real PIM-IDs hold spaces and slashes ("6201-2RS/C3"); keys go into partition keys, paths and tags.
    """
    plain = unicodedata.normalize("NFKD", pim_id.replace("ß", "ss")).encode("ascii", "ignore").decode()
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", plain.strip()).lstrip("._-")
    if not key or len(key) > 64:
        key = f"{key[:51]}-{hashlib.sha256(pim_id.encode()).hexdigest()[:12]}".lstrip("-")
    return key


def product_key(tenant: str, product: str) -> str:
    return f"{check_key_part('tenant', tenant)}{SEPARATOR}{check_key_part('product', product)}"


def split_product_key(key: str) -> tuple[str, str]:
    tenant, sep, product = key.partition(SEPARATOR)
    if not sep:
        raise InputError("invalid_key", f"product partition key {key!r} is not <tenant>|<product>")
    return check_key_part("tenant", tenant), check_key_part("product", product)
