"""Partitions: one dynamic set of tenants, one of products keyed ``<tenant>|<product key>``.

A single product set keeps exactly the products that exist; a 2-D dynamic multi-partition would
be the cross-product of every tenant with every product.
"""

from dagster import DagsterInstance, DynamicPartitionsDefinition
from sqlalchemy.orm import Session

from automat_pipeline.db import repository
from automat_pipeline.db.models import Tenant
from automat_pipeline.keys import partition_key

tenant_partitions = DynamicPartitionsDefinition(name="tenants")
product_partitions = DynamicPartitionsDefinition(name="products")


def register_products(instance: DagsterInstance, session: Session, tenant: Tenant) -> int:
    """Add a ``tenant|product`` partition for every active product that lacks one; return how many exist."""
    keys = [partition_key(tenant.slug, p.key) for p in repository.active_products(session, tenant.id)]
    known = set(instance.get_dynamic_partitions(product_partitions.name))
    instance.add_dynamic_partitions(product_partitions.name, [k for k in keys if k not in known])
    return len(keys)
