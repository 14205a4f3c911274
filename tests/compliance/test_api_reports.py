"""The reports API: the dashboard's figures, exact on known data, for every role.

The data below is written out with its expected figures, so a change in how a figure is
counted fails here (on SQLite and on PostgreSQL alike)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compliance import db
from compliance.models import ROLES, LegalHold, OffboardingRequest, Tenant

pytestmark = pytest.mark.usefixtures("session")
HOUR, DAY = 3600, 86400
_refs = itertools.count()


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def tenant(name: str, **facts: Any) -> Tenant:
    row = Tenant(external_ref=f"rep-{next(_refs)}", name=name, region="US", **facts)
    db.session.add(row)
    db.session.flush()
    return row


def request_row(received: datetime, status: str, churn: str, **stamps: datetime) -> OffboardingRequest:
    row = OffboardingRequest(
        tenant_id=tenant(f"Customer {next(_refs)}").id, requested_by="ops@example.com", channel="email",
        churn_reason=churn, status=status, formats=["csv"], legal_regime="none",
        acknowledgement_due=received + timedelta(hours=24), export_due=received + timedelta(hours=72),
        received_at=received, **stamps)
    db.session.add(row)
    db.session.flush()
    return row


def known_data() -> None:
    """Requests and tenants whose figures at the frozen clock (2026-03-02 09:00 UTC) are known.

    Ten requests (received 1-10 Feb 2026) acknowledged 1, 2, ..., 10 hours after they came, their
    exports delivered 10, 20, ..., 100 hours after; the first four closed 5, 7, 10 and 20 days
    after it, the other six past their 14 days to closure (overdue). One request exporting since
    25 Feb, acknowledged after an hour (72 hours over, overdue), one received 28 Feb and never
    acknowledged (overdue, its 72 hours not over), one withdrawn in January, one closed 13 months
    ago (outside the window).
    """
    closing = {0: 5, 1: 7, 2: 10, 3: 20}
    for k in range(10):
        received = at(2026, 2, 1 + k, 9)
        stamps = {"acknowledged_at": received + timedelta(hours=k + 1),
                  "export_ready_at": received + timedelta(hours=10 * (k + 1))}
        if k in closing:
            stamps["closed_at"] = received + timedelta(days=closing[k])
        request_row(received, "closed" if k in closing else "export_ready",
                    "price" if k % 2 == 0 else "budget_cuts", **stamps)
    request_row(at(2026, 2, 25, 9), "exporting", "missing_features", acknowledged_at=at(2026, 2, 25, 10))
    request_row(at(2026, 2, 28, 9), "received", "price")
    request_row(at(2026, 1, 10, 9), "withdrawn", "other", withdrawn_at=at(2026, 1, 11, 9))
    request_row(at(2025, 2, 10, 9), "closed", "acquired", acknowledged_at=at(2025, 2, 12, 11),
                export_ready_at=at(2025, 2, 10, 10), closed_at=at(2025, 2, 12, 10))
    # Purges: one due in 8 days, one past due and held, one not within 30 days, backups in 18 days.
    tenant("Soon Ltd", closed_at=at(2025, 12, 10, 9))
    held = tenant("Held AG", closed_at=at(2025, 11, 20, 9))
    db.session.add(LegalHold(tenant_id=held.id, reason="litigation", matter="M-7", placed_by="user:legal",
                             placed_at=at(2026, 2, 1, 9)))
    tenant("Later Inc", closed_at=at(2026, 1, 15, 9))
    tenant("Backups SA", closed_at=at(2025, 3, 20, 9), purged_at=at(2025, 6, 20, 9))
    db.session.commit()


EXPECTED_PURGES = [
    ("Held AG", "primary", "2026-02-18T09:00:00+00:00", True, True),
    ("Soon Ltd", "primary", "2026-03-10T09:00:00+00:00", False, False),
    ("Backups SA", "backups", "2026-03-20T09:00:00+00:00", False, False),
]


def test_the_figures_of_known_data(client: Any, as_role: Any, clock: Any) -> None:
    known_data()
    answer = client.get("/api/v1/reports/dashboard", headers=as_role("csm"))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["generated_at"] == "2026-03-02T09:00:00+00:00"
    assert body["since"] == "2025-04-01T00:00:00+00:00"
    assert body["open_by_state"] == {"received": 1, "acknowledged": 0, "verified": 0, "approved": 0,
                                     "exporting": 1, "export_ready": 6, "access_reduced": 0, "failed": 0}
    assert body["overdue"] == 8  # 6 past the 14 days to closure, 1 export and 1 acknowledgement late
    # of eleven (1, 1, 2, ..., 10 hours): the 6th (5 h) and the 10th (9 h); the 50 h of 2025 is outside
    assert body["to_acknowledgement"] == {"count": 11, "median_seconds": 5 * HOUR, "p90_seconds": 9 * HOUR}
    # nearest rank: the median of ten is the 5th (50 h), the 90th percentile the 9th (90 h)
    assert body["to_export"] == {"count": 10, "median_seconds": 50 * HOUR, "p90_seconds": 90 * HOUR}
    # of four: the 2nd (7 days) and the 4th (20 days)
    assert body["to_closure"] == {"count": 4, "median_seconds": 7 * DAY, "p90_seconds": 20 * DAY}
    # 10, 20, ..., 70 hours are in time; the one exporting for five days is judged late
    assert body["export_promise"] == {"counted": 11, "in_time": 7, "share": 7 / 11}
    assert [(p["tenant_name"], p["kind"], p["due_at"], p["due"], p["held"]) for p in body["purges"]] \
        == EXPECTED_PURGES
    assert body["purges_total"] == 3
    churn = body["churn"]
    assert churn["months"] == [f"2025-{m:02}" for m in range(4, 13)] + ["2026-01", "2026-02", "2026-03"]
    assert churn["series"] == {"price": [0] * 10 + [6, 0], "budget_cuts": [0] * 10 + [5, 0],
                               "missing_features": [0] * 10 + [1, 0], "other": [0] * 9 + [1, 0, 0]}


def test_delivery_exactly_at_72_hours_is_in_time_and_a_second_later_is_not(client: Any, as_role: Any,
                                                                            clock: Any) -> None:
    received = at(2026, 2, 1, 9, 0, 0)
    request_row(received, "export_ready", "price", export_ready_at=received + timedelta(hours=72))
    request_row(received, "export_ready", "price", export_ready_at=received + timedelta(hours=72, seconds=1))
    db.session.commit()
    body = client.get("/api/v1/reports/dashboard", headers=as_role("auditor")).json
    assert body["export_promise"] == {"counted": 2, "in_time": 1, "share": 0.5}
    assert body["to_export"] == {"count": 2, "median_seconds": 72 * HOUR, "p90_seconds": 72 * HOUR + 1}


def test_no_data_gives_empty_figures_not_errors(client: Any, as_role: Any, clock: Any) -> None:
    body = client.get("/api/v1/reports/dashboard", headers=as_role("legal")).json
    assert body["to_export"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert body["to_acknowledgement"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert body["export_promise"] == {"counted": 0, "in_time": 0, "share": None}
    assert body["purges"] == [] and body["churn"]["series"] == {} and len(body["churn"]["months"]) == 12
    assert set(body["open_by_state"].values()) == {0}


def test_every_role_may_read_the_figures_and_nobody_else(client: Any, as_role: Any) -> None:
    for role in ROLES:
        assert client.get("/api/v1/reports/dashboard", headers=as_role(role)).status_code == 200
    assert client.get("/api/v1/reports/dashboard").status_code == 401
    spec = client.get("/api/openapi.json").json
    assert "/api/v1/reports/dashboard" in spec["paths"]
