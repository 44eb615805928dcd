"""Webhooks: each delivery a JSON POST signed with HMAC-SHA256 over the timestamp and the body.

Headers: ``Automat-Delivery`` (the delivery id: the same on every retry, so a receiver can drop
repeats), ``Automat-Event`` (the event type), ``Automat-Timestamp`` (Unix seconds of this attempt) and
``Automat-Signature: v1=<hex>``, where ``<hex>`` is HMAC-SHA256 keyed with the webhook's secret over
``<timestamp>.<raw body>``. A receiver recomputes it over the raw bytes it received, compares in
constant time, and refuses a timestamp more than ``REPLAY_WINDOW`` seconds from its clock (``verify``
is that recipe). Failed deliveries are retried with exponential backoff for a day, then given up
and the tenant's admins alerted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from urllib.parse import urlsplit

from automat_pipeline.errors import AutomatError

REPLAY_WINDOW = 300  # seconds
MAX_BACKOFF = 3600.0  # seconds between attempts, at most


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, signed: str, body: bytes, now: float | None = None) -> bool:
    """The receiver's check: the signature over the raw body, within the replay window."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > REPLAY_WINDOW:
        return False
    return hmac.compare_digest(signature(secret, sent, body), signed)


def headers(secret: str, delivery_id: int, event_type: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": "Automat-Webhooks/1",
        "Automat-Delivery": str(delivery_id),
        "Automat-Event": event_type,
        "Automat-Timestamp": str(timestamp),
        "Automat-Signature": signature(secret, timestamp, body),
    }


def backoff(attempts: int, base: float) -> float:
    """Seconds until the next try after ``attempts`` failed ones: base, 2×, 4×… at most an hour."""
    return min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def check_url(url: str, private_networks: bool, resolve: bool = True) -> str:
    """``url`` if a webhook may POST to it: http(s), a host, and, unless ``private_networks``, only
    public addresses (a tenant must not reach the services beside the API: the Dagster webserver,
    PostgreSQL, cloud metadata). ``resolve``: look the name up (the deliverer, before each POST);
    without, only an address written in the URL is checked (saving a webhook waits for no DNS)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is no number or out of range
    except ValueError as error:
        raise AutomatError("invalid_url", f"not a URL: {error}") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AutomatError("invalid_url", "a webhook URL is http:// or https:// with a host")
    if private_networks:
        return url
    try:
        addresses = {str(ipaddress.ip_address(parts.hostname))}
    except ValueError:
        if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
            addresses = {"127.0.0.1"}
        elif not resolve:
            return url
        else:
            try:
                found = socket.getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as error:
                raise AutomatError("invalid_url", f"{parts.hostname} does not resolve: {error}") from error
            addresses = {info[4][0].split("%")[0] for info in found}
    for address in addresses:
        if not ipaddress.ip_address(address).is_global:
            raise AutomatError(
                "private_address",
                f"{parts.hostname} is {address}, a private, loopback or reserved address "
                "(AUTOMAT_WEBHOOK_PRIVATE_NETWORKS allows them)",
            )
    return url
