"""Partitions: one dynamic set of tenants, one of products keyed ``<tenant>|<product>``.

A single product set keeps exactly the products that exist; a 2-D dynamic multi-partition would
be the cross-product of every tenant with every product.
"""

from __future__ import annotations

import re

from dagster import DynamicPartitionsDefinition

from automat_pipeline.errors import InputError

tenant_partitions = DynamicPartitionsDefinition(name="tenants")
product_partitions = DynamicPartitionsDefinition(name="products")

KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SEPARATOR = "|"
TENANT_TAG = "automat/tenant"


def check_key_part(kind: str, value: str) -> str:
    """A tenant slug or product id usable in a partition key, file path and run tag."""
    if not KEY_PART.fullmatch(value):
        raise InputError(
            "invalid_key",
            f"{kind} {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return value


def product_key(tenant: str, product: str) -> str:
    return f"{check_key_part('tenant', tenant)}{SEPARATOR}{check_key_part('product', product)}"


def split_product_key(key: str) -> tuple[str, str]:
    tenant, sep, product = key.partition(SEPARATOR)
    if not sep:
        raise InputError("invalid_key", f"product partition key {key!r} is not <tenant>|<product>")
    return check_key_part("tenant", tenant), check_key_part("product", product)
