"""Names that go into paths, partition keys and run tags: tenant slugs, product keys, partition keys.

A *product key* is a PIM-ID made safe (``6201-2RS/C3`` → ``6201-2RS_C3``, ``Product.key``); a
*partition key* names one product of one tenant, ``<tenant>|<product key>``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from automat_pipeline.errors import AutomatError

KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_PATTERN = f"^{KEY_PART.pattern}$"  # for pydantic, whose pattern is a search, not a full match
SEPARATOR = "|"


def check_key_part(kind: str, value: str) -> str:
    """A tenant slug or product key usable in a partition key, file path and run tag (full match)."""
    if not isinstance(value, str) or not KEY_PART.fullmatch(value):
        raise AutomatError(
            "invalid_key",
            f"{kind} {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return value


def product_key(pim_id: str) -> str:
    """A PIM-ID as a product key: other characters become ``_``; over-long ids keep a hash suffix.

    Real PIM-IDs hold spaces and slashes ("6201-2RS/C3"); keys go into partition keys, paths and tags.
    """
    plain = unicodedata.normalize("NFKD", pim_id.replace("ß", "ss")).encode("ascii", "ignore").decode()
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", plain.strip()).lstrip("._-")
    if not key or len(key) > 64:
        key = f"{key[:51]}-{hashlib.sha256(pim_id.encode()).hexdigest()[:12]}".lstrip("-")
    return key


def partition_key(tenant: str, product: str) -> str:
    """``<tenant>|<product key>``, each part checked."""
    return f"{check_key_part('tenant', tenant)}{SEPARATOR}{check_key_part('product', product)}"


def split_partition_key(key: str) -> tuple[str, str]:
    """``(tenant, product key)`` of a partition key, each part checked."""
    tenant, sep, product = key.partition(SEPARATOR)
    if not sep:
        raise AutomatError("invalid_key", f"product partition key {key!r} is not <tenant>|<product>")
    return check_key_part("tenant", tenant), check_key_part("product", product)


def tenant_of(partition: str) -> str:
    """The tenant slug of a ``tenant|product`` partition key."""
    return split_partition_key(partition)[0]


def path_under(root: Path | str, *parts: str) -> Path:
    """``root/part/…`` resolved, which must lie inside ``root``: a name from a request, a catalogue or
    a partition key never walks out of its folder (``..``, an absolute path, a symbolic link)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise AutomatError("invalid_path", f"{'/'.join(parts)!r} does not lie inside {base}")
    return path
