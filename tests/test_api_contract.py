"""Schemathesis against the API's own OpenAPI schema, a bounded number of examples per operation:
no 5xx, every status returned documented, every body as documented."""

import pytest
import schemathesis
from conftest import SECRET
from hypothesis import HealthCheck, settings

from automat_pipeline.api.security import Role, access_token

pytestmark = pytest.mark.slow


@pytest.fixture
def api_schema(api):
    return schemathesis.openapi.from_asgi("/openapi.json", api.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schemathesis.check
def no_server_error_but_dagster_down(ctx, response, case):
    """No 5xx, except the documented 503 of a launch while Dagster (absent in this test) is down."""
    if response.status_code >= 500 and not (response.status_code == 503 and "Dagster does not answer" in response.text):
        raise AssertionError(f"server error {response.status_code}: {response.text[:200]}")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_honours_its_schema(case, world):
    token = access_token(SECRET, 2, Role.tenant_admin, world["tenants"]["acme"])  # ta@acme.example
    # The bar: no unexpected 5xx, only documented statuses, bodies as documented. Rules the schema cannot
    # express (an unknown output type, an empty order) answer a documented 422 or 409.
    checks = schemathesis.checks
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[
            no_server_error_but_dagster_down,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
