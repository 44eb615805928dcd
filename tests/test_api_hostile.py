"""The API under hostile clients, on a real server (uvicorn on loopback): limits before parsing, no
500 from any body, no input echoed, concurrent writers that never share a file."""

from __future__ import annotations

import select
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, login

STEP = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n"


def raw(base: str, head: str, body_chunks) -> tuple[str, int]:
    """Send a request by hand, a chunk at a time, until the server answers; the status line of its
    answer ("no answer" if it stays silent), and how many body bytes it had taken by then."""
    port = int(base.rsplit(":", 1)[1])
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode())
        for chunk in body_chunks:
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(chunk)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        try:
            return s.recv(4096).split(b"\r\n", 1)[0].decode() or "no answer", sent
        except (TimeoutError, ConnectionResetError):
            return "no answer", sent


def megabytes(count: int):
    for _ in range(count):
        yield b"x" * (1 << 20)


def test_an_anonymous_upload_is_refused_before_its_body_is_read(live, env, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a spooled body would land
    head = (
        "POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {200 << 20}\r\n\r\n"
    )
    status, sent = raw(live, head, megabytes(200))
    assert status == "HTTP/1.1 401 Unauthorized"
    assert sent < 50 << 20, f"the server read {sent >> 20} MiB of an anonymous upload before answering"
    assert list(tmp_path.iterdir()) == [] and not Path(env["AUTOMAT_UPLOADS_DIR"]).exists()


def test_a_declared_oversize_body_is_refused_unread(live):
    head = "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, sent = raw(live, head + f"Content-Length: {150 << 20}\r\n\r\n", megabytes(150))
    assert status == "HTTP/1.1 413 Request Entity Too Large" and sent < 50 << 20


def test_an_undeclared_oversize_body_is_refused_as_it_streams(live):
    head = (
        "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = (f"{1 << 20:x}\r\n".encode() + b"x" * (1 << 20) + b"\r\n" for _ in range(150))
    status, sent = raw(live, head, chunks)
    assert status == "HTTP/1.1 413 Request Entity Too Large" and sent < 50 << 20


@pytest.mark.parametrize(
    "body",
    [
        '{"email": "a@b.example", "password": 1e999}',
        '{"email": "a@b.example", "password": Infinity}',
        '{"email": "a@b.example", "password": NaN}',
        '{"email": "\\ud800@b.example", "password": 5}',
        '{"refresh_token": ["\\ud800", -Infinity]}',
    ],
    ids=["1e999", "Infinity", "NaN", "lone-surrogate", "refresh"],
)
def test_hostile_json_is_a_422_that_does_not_echo_it(api, body):
    for path in ("/auth/login", "/auth/refresh"):
        response = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert "input" not in response.text and "Infinity" not in response.text and "1e999" not in response.text


def test_a_rejected_body_is_not_echoed_back(api):
    huge = "x" * 500_000
    response = api.post("/auth/login", json={"email": huge, "password": huge})
    assert response.status_code == 422 and len(response.content) < 2_000


def test_a_lone_surrogate_that_passes_validation_is_still_a_client_error(api, world):
    client = login(api, "client@acme.example")
    order = api.post("/orders", headers=client).json()["id"]
    pm = login(api, "pm@acme.example")
    response = api.post(f"/orders/{order}/reject", headers=pm, content='{"reason": "a \\ud800 b"}')
    assert response.status_code == 422, response.text


def test_upload_names_keep_their_extension_and_their_letters_but_no_path(api, world, env):
    """Stored as a product list would name them (inbox.file_name): Unicode kept, paths and tricks gone."""
    client = login(api, "client@acme.example")
    for given, stored in (
        ("Lagerü Zeichnung.STEP", "Lagerü Zeichnung.STEP"),
        ("A\u0308rger  軸受.stp", "Ärger 軸受.stp"),  # composed (NFC), one blank
        ("../../../etc/passwd.stp", "passwd.stp"),
        ("..\\..\\boot.ini.stp", "boot.ini.stp"),
        ("\u202egpj.stp", "gpj.stp"),  # no right-to-left override
        ("pro\r\nduct.stp", "pro duct.stp"),  # the client escapes CR LF as %0D%0A (HTML forms)
        (".hidden.stp", "hidden.stp"),  # the inbox skips dot files
        ('a"b?.stp', "a_b_.stp"),
        ("x" * 400 + ".stp", "x" * 200 + ".stp"),
    ):
        response = api.post("/uploads", headers=client, files={"file": (given, STEP)})
        assert response.status_code == 201, (given, response.text)
        assert response.json()["filename"] == stored
        assert (Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme" / stored).read_bytes() == STEP


def test_concurrent_uploads_of_one_name_never_mix(live, world, env):
    token = httpx.post(f"{live}/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    bodies = [STEP.replace(b"DATA;", b"DATA;\n/* " + bytes([65 + n]) * (300_000 + n) + b" */") for n in range(8)]

    def send(body: bytes) -> int:
        return httpx.post(
            f"{live}/uploads", headers=headers, files={"file": ("same.stp", body)}, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses == [201] * 8
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    assert [p.name for p in inbox.iterdir()] == ["same.stp"]  # no partial file left behind
    assert inbox.joinpath("same.stp").read_bytes() in bodies  # one whole upload, not a mix
