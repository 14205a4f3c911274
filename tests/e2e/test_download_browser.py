"""The customer's side of delivery in a real browser (Debian's Chromium, driven by Playwright),
against the real service: open the link on a phone-sized screen, download the bundle with
the button, resume part of it the way a browser does, verify it with ``sha256sum -c``, and
see the page say what happened once the link is revoked."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage

pytestmark = pytest.mark.e2e
PHONE = {"width": 375, "height": 812}
# What Chromium sends to resume an interrupted download: the rest, if the file is unchanged.
RESUME = """async ([url, etag, offset]) => {
  const answer = await fetch(url, {headers: {"Range": `bytes=${offset}-`, "If-Range": etag}});
  const body = await answer.arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  return {status: answer.status, range: answer.headers.get("Content-Range"), length: body.byteLength,
          sha256: Array.from(digest, byte => byte.toString(16).padStart(2, "0")).join("")};
}"""


def test_customer_downloads_resumes_and_verifies_in_a_browser(
        service: Any, browser: Browser, tmp_path: Path) -> None:  # the conftest's Service
    export = service.ready_export()
    sha256, size = export["bundle_sha256"], export["bundle_bytes"]
    link_id, token, page_url = service.issue(export["id"], max_downloads=3)
    context = browser.new_context(accept_downloads=True, viewport=PHONE)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text)
            if isinstance(message, ConsoleMessage) and message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    # The page: what the bundle holds, how long the link lasts, and how to check the files.
    opened = page.goto(page_url)
    assert opened is not None and opened.status == 200
    assert opened.headers["cache-control"] == "no-store"
    assert opened.headers["referrer-policy"] == "no-referrer"
    assert page.title() == "Data export for Demo Customer GmbH"
    facts = page.locator("dl.facts").inner_text()
    assert sha256 in facts and "3 of 3" in facts and "UTC" in facts
    rows = page.locator("#contents ~ div table tbody tr")
    assert rows.count() == len(export["manifest"]["files"])
    assert "sha256sum -c SHA256SUMS" in page.locator("section[aria-labelledby=verify]").inner_text()
    # Readable on a phone: nothing wider than the screen but the scrollable file table.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # The button downloads the bundle under its own name; the bytes are the bundle's.
    with page.expect_download() as started:
        page.get_by_role("link", name="Download the bundle").click()
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.failure() is None
    assert saved.name == f"demo-001-export-{export['id']}.zip"
    data = saved.read_bytes()
    assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256

    # A browser resuming: the rest of the file from an offset, only if it is still the same file.
    offset = size // 3
    resumed = page.evaluate(RESUME, [f"{page_url}/bundle.zip", f'"{sha256}"', offset])
    assert resumed == {"status": 206, "range": f"bytes {offset}-{size - 1}/{size}",
                       "length": size - offset, "sha256": hashlib.sha256(data[offset:]).hexdigest()}
    stale = page.evaluate(RESUME, [f"{page_url}/bundle.zip", '"another-version"', offset])
    assert stale["status"] == 200 and stale["length"] == size  # changed: the whole file again

    # The customer checks the files as the page says.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(saved) as archive:
        archive.extractall(unpacked)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unpacked, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0 and "FAILED" not in check.stdout, check.stdout + check.stderr

    # Two whole downloads used (the button, the stale resume); the range was free.
    page.reload()
    assert "1 of 3" in page.locator("dl.facts").inner_text()
    row = service.link_row(export["id"], link_id)
    assert row["downloads"] == 2
    assert [(h["action"], h["outcome"]) for h in row["history"]] == [
        ("download.page", "ok"), ("download.bundle", "ok"),
        ("download.bundle", f"range {offset}-{size - 1}"), ("download.bundle", "ok"),
        ("download.page", "ok")]

    # Revoked: the same address now explains itself, and still caches nothing.
    status, _ = service.api("POST", f"/links/{link_id}/revoke")
    assert status == 200
    refused = page.reload()
    assert refused is not None and refused.status == 410
    assert refused.headers["cache-control"] == "no-store"
    assert page.get_by_role("heading", level=1).inner_text() == "This link was withdrawn"
    assert "To get a new link" in page.locator("main").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert not [problem for problem in problems if "410" not in problem], problems
    context.close()

    assert service.stop() == 0, service.output
    assert token not in service.output
