"""The embedded PostgreSQL of local stacks asks every connection for its password."""

import os
import stat

import pytest
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from automat_pipeline.db.database import set_role_password
from automat_pipeline.embedded import api_url, database_url, start_server


def test_the_embedded_server_trusts_no_connection(tmp_path):
    server, admin_url = start_server(tmp_path / "data", cleanup_mode="delete")  # noqa: F841 - keeps it up
    domain = database_url(admin_url, "automat")
    with create_engine(domain).begin() as conn:
        conn.execute(text("CREATE ROLE automat_app LOGIN"))
    set_role_password(domain, api_url(domain))
    assert stat.S_IMODE(os.stat(tmp_path / "postgres_password").st_mode) == 0o600
    for url in (domain, api_url(domain)):
        with create_engine(url).connect() as conn:  # with its password: in
            assert conn.execute(text("SELECT 1")).scalar() == 1
        given = make_url(url)
        for wrong in (None, "guess"):
            refused = URL.create(given.drivername, given.username, wrong, database=given.database, query=given.query)
            with pytest.raises(OperationalError, match="password"), create_engine(refused).connect():
                pass
