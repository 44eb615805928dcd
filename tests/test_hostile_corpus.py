"""The hostile corpus's slice (every family, a few of each) through a live API and an inbox, the
sensor and the import and conversion steps run as the daemon would: nothing fails the server or a
tick, every input is recorded with a class and a reason that names no Python exception, nothing is
lost. ``bench/run.py hostile`` sends the whole corpus."""

import sys
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD

from automat_pipeline.embedded import REPO
from automat_pipeline.settings import Settings

sys.path.insert(0, str(REPO / "bench"))
import hostile_corpus  # noqa: E402 - bench/, where the hostile corpus is made


@pytest.mark.slow
def test_the_hostile_slice_fails_no_server_and_no_tick_and_loses_nothing(live, env, tmp_path):
    inputs = hostile_corpus.build(tmp_path / "corpus", Settings().fixtures_dir, small=True)
    families = {i.family for i in inputs}
    assert {"truncation", "bit_flip", "zip_bomb", "name", "multipart", "assembly", "unicode"} <= families
    answer = httpx.post(f"{live}/auth/login", json={"email": "client@acme.example", "password": PASSWORD})
    report = hostile_corpus.send(
        tmp_path / "corpus",
        inputs,
        base_url=live,
        headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
        api_tenant="acme",
        inbox_tenant="beta",
        database_url=env["AUTOMAT_DATABASE_URL"],
        uploads_dir=Path(env["AUTOMAT_UPLOADS_DIR"]),
        media_dir=Path(env["AUTOMAT_MEDIA_DIR"]),
    )
    summary = report.summary()
    failed = [o for o in report.outcomes if o.server_error or o.lost or not o.recorded or o.python_error]
    assert failed == [] and report.crashed_ticks == [] and report.unclassified == [], summary
    assert {o.id for o in report.outcomes} == {i.id for i in inputs}  # each sent one way or both
    assert summary["tried_api"] and summary["tried_inbox"]
