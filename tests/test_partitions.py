import pytest

from automat_pipeline.errors import InputError
from automat_pipeline.partitions import product_key, split_product_key


def test_product_key_round_trips():
    assert product_key("acme", "DGBB-6204") == "acme|DGBB-6204"
    assert split_product_key("acme|DGBB-6204") == ("acme", "DGBB-6204")


@pytest.mark.parametrize(
    "tenant,product",
    [("ac me", "x"), ("acme", "a|b"), ("acme", ""), ("-acme", "x"), ("acme", "x" * 65), ("acme", "../etc")],
)
def test_product_key_rejects_unsafe_parts(tenant, product):
    with pytest.raises(InputError) as error:
        product_key(tenant, product)
    assert error.value.error_class == "invalid_key"


def test_split_rejects_key_without_separator():
    with pytest.raises(InputError, match="not <tenant>|<product>"):
        split_product_key("acme-DGBB")
