"""Partitions: one dynamic set of tenants, one of products keyed ``<tenant>|<product key>``.

A single product set keeps exactly the products that exist; a 2-D dynamic multi-partition would
be the cross-product of every tenant with every product.
"""

import warnings

from dagster import BetaWarning, DagsterInstance, DynamicPartitionsDefinition
from sqlalchemy.orm import Session

from automat_pipeline.db import repository
from automat_pipeline.db.models import Tenant
from automat_pipeline.keys import partition_key

# Products run in batches (a range of partitions in one run: the media assets' single-run backfill
# policy), which Dagster 1.13 still calls beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)

tenant_partitions = DynamicPartitionsDefinition(name="tenants")
product_partitions = DynamicPartitionsDefinition(name="products")


def register_products(instance: DagsterInstance, session: Session, tenant: Tenant) -> int:
    """Add a ``tenant|product`` partition for every active product that lacks one; return how many exist."""
    keys = [partition_key(tenant.slug, key) for key in repository.active_product_keys(session, tenant.id)]
    known = set(instance.get_dynamic_partitions(product_partitions.name))
    instance.add_dynamic_partitions(product_partitions.name, [k for k in keys if k not in known])
    return len(keys)
