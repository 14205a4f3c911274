"""Property-based: no input the OpenAPI schema can describe (valid or not) makes a 500."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from compliance import db
from compliance.models import SourceConfig, Tenant
from compliance.workflow import open_request

EXAMPLES_PER_OPERATION = 25


def seed_rows() -> None:
    """Rows with id 1.. so that generated ids reach real objects too, not only 404s."""
    tenant = Tenant(external_ref="fuzz-1", name="Fuzz", region="DE")
    db.session.add(tenant)
    db.session.flush()
    db.session.add(SourceConfig(tenant_id=tenant.id, kind="demo", name="demo", config={"rows": 10}))
    open_request(tenant, actor="test", requested_by="x", channel="email", churn_reason="price",
                 formats=["csv"])
    db.session.commit()


def test_no_input_makes_a_server_error(app, client, as_role) -> None:  # type: ignore[no-untyped-def]
    seed_rows()
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def call(case) -> None:  # type: ignore[no-untyped-def]
                # A fresh key each time: a generated DELETE may revoke the previous one.
                response = case.call(headers=as_role("admin"))
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.body!r} -> "
                                    f"{response.status_code} {response.text[:200]}")

            call()
    assert failures == []
