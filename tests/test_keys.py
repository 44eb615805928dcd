import pytest

from automat_pipeline.errors import AutomatError
from automat_pipeline.keys import partition_key, split_partition_key


def test_partition_key_round_trips():
    assert partition_key("acme", "DGBB-6204") == "acme|DGBB-6204"
    assert split_partition_key("acme|DGBB-6204") == ("acme", "DGBB-6204")


@pytest.mark.parametrize(
    "tenant,product",
    [("ac me", "x"), ("acme", "a|b"), ("acme", ""), ("-acme", "x"), ("acme", "x" * 65), ("acme", "../etc")],
)
def test_partition_key_rejects_unsafe_parts(tenant, product):
    with pytest.raises(AutomatError) as error:
        partition_key(tenant, product)
    assert error.value.error_class == "invalid_key"


def test_split_rejects_key_without_separator():
    with pytest.raises(AutomatError, match="not <tenant>|<product>"):
        split_partition_key("acme-DGBB")
