"""The audit page: searching the event log (the same query as the audit API), the latest signed
checkpoint, and ``audit verify`` runs recorded from the CLI, the schedule and the page's button."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rq.cron import CronScheduler
from sqlalchemy import select, update

import audit
from audit import checkpoints, verifications
from compliance import db, queues
from compliance.models import AuditEvent, AuditLeaf
from compliance.worker import CRON_CONFIG

URL = "/admin/audit"


def seed(clock: Any) -> None:
    """Seven events a day apart from 2026-03-02 09:00 UTC: the 1st to the 7th of this list."""
    for action, actor, tenant_id, request_id in [
        ("request.received", "user:1", 1, 10),
        ("purge.started", "system", 1, 10),
        ("purge.completed", "system", 1, 10),
        ("purge_x.other", "system", 2, None),  # "_" is a character, not a LIKE wildcard
        ("hold.placed", "user:2", 2, None),
        ("request.received", "user:1", 3, 30),
        ("purgeable.thing", "user:2", 3, 30),
    ]:
        audit.record(action, actor=actor, tenant_id=tenant_id, request_id=request_id,
                     data={"day": clock.now().day})
        clock.advance(timedelta(days=1))
    db.session.commit()


def days(page: Any) -> list[int]:
    """The seeded events a page lists, by their day, in the page's order."""
    return [int(day) for day in re.findall(r"<dt>day</dt><dd>(\d+)</dd>", page.get_data(as_text=True))]


def test_readers_see_the_page_and_a_csm_does_not(staff: Any) -> None:
    for role in ("auditor", "legal", "admin"):
        page = staff(role).get(URL)
        assert page.status_code == 200 and "<h1>Audit log</h1>" in page.get_data(as_text=True)
    refused = staff("csm").get(URL)
    assert refused.status_code == 403 and "You may not do this" in refused.get_data(as_text=True)


def test_each_filter_narrows_the_events(staff: Any, clock: Any) -> None:
    seed(clock)
    auditor = staff("auditor")
    assert days(auditor.get(URL)) == [8, 7, 6, 5, 4, 3, 2]  # newest first
    cases = {
        "tenant_id=1": [4, 3, 2],
        "request_id=30": [8, 7],
        "actor=user:2": [8, 6],
        "action=request.received": [7, 2],
        "action=purge.": [4, 3],  # a trailing dot: every action under it, not purge_x or purgeable
        "action=purge": [],  # otherwise exact
        "from=2026-03-04&to=2026-03-05": [5, 4],  # "to" includes its day
        "from=2026-03-07": [8, 7],
        "to=2026-03-03&tenant_id=1": [3, 2],
        "tenant_id=2&actor=system": [5],
    }
    for query, expected in cases.items():
        assert days(auditor.get(f"{URL}?{query}")) == expected, query


def test_bad_filters_are_named_beside_their_field(staff: Any) -> None:
    auditor = staff("auditor")
    bad = auditor.get(f"{URL}?tenant_id=abc&actor=system")
    page = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert re.search(r'id="tenant_id"[^>]*aria-invalid="true"', page)
    assert '<p class="field-error" id="tenant_id-error">Not a valid integer.</p>' in page
    assert 'value="abc"' in page and 'value="system"' in page  # what was typed is kept
    backwards = auditor.get(f"{URL}?from=2026-03-05&to=2026-03-01")
    assert backwards.status_code == 400
    assert '<p class="field-error" id="to-error">must not be before the start date</p>' \
        in backwards.get_data(as_text=True)
    assert auditor.get(f"{URL}?cursor=nonsense").status_code == 400


def test_events_are_paged_with_a_cursor(staff: Any, clock: Any) -> None:
    seed(clock)
    auditor = staff("auditor")
    first = auditor.get(f"{URL}?actor=system&limit=2")
    assert days(first) == [5, 4]
    [next_url] = re.findall(r'href="([^"]+)" rel="next"', first.get_data(as_text=True))
    second = auditor.get(next_url.replace("&amp;", "&"))
    assert days(second) == [3] and 'rel="next"' not in second.get_data(as_text=True)
    assert "actor=system" in next_url and "First page" in second.get_data(as_text=True)


def test_events_link_their_tenant_and_request_and_never_show_secrets(staff: Any, clock: Any) -> None:
    audit.record("link.issued", actor="user:5", tenant_id=4, request_id=40, subject=("download_link", 9),
                 data={"expires": "2026-03-09", "token": "should-not-show", "formats": ["csv", "json"]})
    db.session.commit()
    page = staff("legal").get(f"{URL}?tenant_id=4").get_data(as_text=True)
    assert '<a href="/admin/tenants/4">Tenant 4</a>' in page
    assert '<a href="/admin/requests/40">Request 40</a>' in page
    assert "Download link 9" in page and "<code>link.issued</code>" in page and "queued" in page
    assert "<dt>formats</dt><dd>[&#34;csv&#34;,&#34;json&#34;]</dd>" in page
    assert "<dt>expires</dt><dd>2026-03-09</dd>" in page
    assert "should-not-show" not in page and "<dt>token</dt><dd>(hidden)</dd>" in page


def test_the_page_and_the_api_answer_the_same_search(staff: Any, client: Any, as_role: Any,
                                                     clock: Any) -> None:
    seed(clock)
    headers = as_role("auditor")
    auditor = staff("auditor")
    for api_query, page_query in [
        ("action=purge.", "action=purge."),
        ("tenant_id=2&actor=system", "tenant_id=2&actor=system"),
        ("request_id=10&action=purge.completed", "request_id=10&action=purge.completed"),
        ("since=2026-03-04T00:00:00%2B00:00&until=2026-03-06T00:00:00%2B00:00",
         "from=2026-03-04&to=2026-03-05"),
    ]:
        api = client.get(f"/api/v1/audit/events?{api_query}", headers=headers)
        assert api.status_code == 200, api.json
        found = [event["data"]["day"] for event in api.json["items"]]
        assert found and found == days(auditor.get(f"{URL}?{page_query}")), api_query


def test_the_latest_checkpoint_is_shown(staff: Any, clock: Any) -> None:
    assert "No checkpoint has been signed yet" in staff("auditor").get(URL).get_data(as_text=True)
    seed(clock)
    row = checkpoints.checkpoint()
    auditor = staff("admin")  # signed in after the week the seeding took
    page = auditor.get(URL).get_data(as_text=True)
    assert f"<dt>Tree size</dt><dd>{row.size} events</dd>" in page
    assert f"<code>{row.key_id}</code>" in page
    assert re.search(r"<dt>Root hash</dt><dd><code>[A-Za-z0-9+/]{43}=</code></dd>", page)
    assert "09 Mar 2026, 09:00 UTC" in page  # signed at the clock's time


def test_the_last_verification_passed_or_names_its_problem(staff: Any, clock: Any) -> None:
    assert "No verification has been recorded yet" in staff("auditor").get(URL).get_data(as_text=True)
    seed(clock)
    checkpoints.checkpoint()
    assert verifications.run("cli:ops").ok
    auditor = staff("legal")  # signed in after the week the seeding took
    page = auditor.get(URL).get_data(as_text=True)
    assert "Passed" in page and "<code>cli:ops</code>" in page and "09 Mar 2026, 09:00 UTC" in page

    clock.advance(timedelta(hours=1))
    event_id = db.session.scalar(select(AuditLeaf.event_id).where(AuditLeaf.log_index == 3))
    db.session.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(actor="someone"))
    db.session.commit()
    assert verifications.job() is False  # the scheduled job, as the system
    page = " ".join(auditor.get(URL).get_data(as_text=True).split())
    assert "Failed: 1 problem" in page and "<code>system</code>" in page
    assert "<dt>First bad index</dt><dd>3</dd>" in page
    assert "event 3: its columns (actor) no longer say what its canonical JSON says" in page


def test_verify_now_queues_the_job_for_the_person_who_asked(staff: Any, clock: Any, work: Any) -> None:
    auditor = staff("auditor")
    assert "Verify now" in auditor.get(URL).get_data(as_text=True)
    answer = auditor.post("/admin/audit/verify")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(URL)
    assert queues.queue(verifications.QUEUE).count == 1
    assert "Verification queued" in auditor.get(URL).get_data(as_text=True)
    work()
    outcome = verifications.last()
    assert outcome is not None and outcome.ok and outcome.actor == f"user:{auditor.user.id}"
    assert f"<code>user:{auditor.user.id}</code>" in auditor.get(URL).get_data(as_text=True)


@pytest.mark.parametrize("role", ["csm", "legal"])
def test_verify_now_is_refused_to_other_roles(staff: Any, role: str) -> None:
    person = staff(role)
    if role == "legal":
        assert "Verify now" not in person.get(URL).get_data(as_text=True)  # a reader without the button
    answer = person.post("/admin/audit/verify")
    assert answer.status_code == 403
    assert queues.queue(verifications.QUEUE).count == 0


def test_verify_now_without_its_csrf_token_is_refused(staff: Any) -> None:
    admin = staff("admin")
    admin.get(URL)
    answer = admin.post("/admin/audit/verify", csrf=False)
    assert answer.status_code == 400 and "security token" in answer.get_data(as_text=True)
    assert queues.queue(verifications.QUEUE).count == 0


def test_a_daily_verification_is_scheduled(redis: Any) -> None:
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file(CRON_CONFIG)
    [job] = [job for job in scheduler.get_jobs() if job.func is verifications.job]
    assert (job.cron, job.queue_name, job.name) == ("0 4 * * *", "default", "audit-verify")


def test_the_cli_records_each_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OFFBOARD_INSTANCE_DIR=str(tmp_path), USER="ops")

    def offboard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    def recorded() -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(tmp_path / "offboard.db") as connection:
            rows = connection.execute("SELECT actor, data FROM audit_events WHERE action = 'audit.verified' "
                                      "ORDER BY id").fetchall()
        return [(actor, json.loads(data)) for actor, data in rows]

    assert offboard("db", "upgrade").returncode == 0
    assert offboard("keys", "create", "--role", "csm").returncode == 0
    assert offboard("audit", "checkpoint").returncode == 0
    passed = offboard("audit", "verify")
    assert passed.returncode == 0 and "audit log verifies: 1 events, 1 checkpoints, 0 queued" in passed.stdout
    [(actor, data)] = recorded()
    assert actor == "cli:ops"
    assert data == {"ok": True, "size": 1, "checkpoints": 1, "queued": 0, "problems": [],
                    "first_bad_index": None, "notes": [], "note_count": 0}
    with sqlite3.connect(tmp_path / "offboard.db") as connection:
        connection.execute("UPDATE audit_events SET actor = 'someone' WHERE id = 1")
    failed = offboard("audit", "verify")
    assert failed.returncode == 1 and "first bad index 0" in failed.stderr
    [_, (actor, data)] = recorded()
    assert actor == "cli:ops" and data["ok"] is False and data["first_bad_index"] == 0
    assert data["problems"] == ["event 0: its columns (actor) no longer say what its canonical JSON says"]
