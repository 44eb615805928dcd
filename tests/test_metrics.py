"""``GET /metrics``: who may read it, and the histograms it serves from the domain database (Dagster
down here; runs by state with a live Dagster: tests/test_ui.py)."""

import pytest
from conftest import SECRET
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from automat_pipeline.api.app import create_app
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.embedded import api_url
from automat_pipeline.settings import Settings

TOKEN = "a scraper's token"


@pytest.fixture
def scraped(env, world):  # noqa: F811
    config = Settings(
        database_url=env["AUTOMAT_DATABASE_URL"],
        api_database_url=api_url(env["AUTOMAT_DATABASE_URL"]),
        jwt_secret=SECRET,
        dagster_graphql_url="http://127.0.0.1:9/graphql",  # nothing listens: Dagster is down
        metrics_token=TOKEN,
    )
    with TestClient(create_app(config, launcher=False)) as client:
        yield client


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_only_the_token_or_a_loopback_caller_reads_metrics(api, scraped):  # noqa: F811
    assert api.get("/metrics").status_code == 403  # no token set, and the test client is no loopback caller
    assert scraped.get("/metrics").status_code == 401
    assert scraped.get("/metrics", headers={"Authorization": "Bearer guessed"}).status_code == 401
    assert scraped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_histograms_of_conversions_renders_and_ticks_while_dagster_is_down(env, scraped):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for seconds in (0.3, 4.0, 4000):
            repository.observe(s, "conversion", "cad_conversion", "acme", seconds)
        repository.observe(s, "render", "thumbnail", "acme", 1.2)
        repository.observe(s, "sensor_tick", "upload_sensor", "", 0.02)
    response = scraped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    conversion = (("step", "cad_conversion"), ("tenant", "acme"))
    buckets = {
        le: found["automat_conversion_seconds_bucket", (("le", le), *conversion)]
        for le in ("0.25", "0.5", "5.0", "3600.0", "+Inf")
    }
    assert buckets == {"0.25": 0, "0.5": 1, "5.0": 2, "3600.0": 2, "+Inf": 3}
    assert found["automat_conversion_seconds_count", conversion] == 3
    assert found["automat_conversion_seconds_sum", conversion] == pytest.approx(4004.3)
    assert found["automat_render_seconds_count", (("step", "thumbnail"), ("tenant", "acme"))] == 1
    assert found["automat_sensor_tick_seconds_count", (("step", "upload_sensor"), ("tenant", ""))] == 1
    assert found["automat_dagster_up", ()] == 0
