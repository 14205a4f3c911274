"""Fixtures for tests that run the service as separate processes, on private data."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; a test never downloads a browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERIOUS = ("serious", "critical")
KEY_LINE = re.compile(r"^\s+(ob_[0-9a-f]{12}_[A-Za-z0-9_-]{43})\s*$")
DEMO_TENANT_ID = 1
PASSWORD = "correct horse battery staple"  # every member of staff the browser tests sign in as
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private database (and Redis db) for the service under test."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "OFFBOARD_INSTANCE_DIR")}
    env.update(OFFBOARD_INSTANCE_DIR=str(tmp_path / "instance"), PORT=str(free_port()))
    pg_url = os.environ.get("TEST_DATABASE_URL")
    database = f"offboard_e2e_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT") if pg_url else None
    if admin is not None:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        env["DATABASE_URL"] = make_url(pg_url).set(database=database).render_as_string(False)
    if os.environ.get("TEST_REDIS_URL"):
        redis_url = re.sub(r"/\d+$", "", os.environ["TEST_REDIS_URL"]) + "/14"
        Redis.from_url(redis_url).flushdb()
        env["REDIS_URL"] = redis_url
    yield env
    if admin is not None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()



class Service:
    """The service in a subprocess (``python -m compliance.cli run``), its output collected by
    a thread, and the API calls a CSM makes on it with the bootstrap admin key."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{env['PORT']}"
        self.process = subprocess.Popen([sys.executable, "-m", "compliance.cli", "run"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self._key: str | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def key(self) -> str | None:
        """The bootstrap admin key, if the service printed one."""
        return next((m.group(1) for line in self.lines if (m := KEY_LINE.match(line))), None)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
             key: str | None = None) -> tuple[int, dict[str, Any]]:
        """One JSON call: status and the decoded answer."""
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         data=json.dumps(body).encode() if body else None)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """A call on ``/api/v1`` with the bootstrap admin key."""
        return self.call(method, f"/api/v1{path}", body, key=self.admin_key())

    def admin_key(self) -> str:
        """The key printed once at first start, when the service answers its health check."""
        deadline = time.monotonic() + 60
        while self._key is None and time.monotonic() < deadline:
            assert self.process.poll() is None, self.output
            try:
                status, _ = self.call("GET", "/healthz")
            except OSError:
                status = None
            key = self.key()
            if status == 200 and key:
                self._key = key
            else:
                time.sleep(0.2)
        if self._key is None:
            raise AssertionError("the service did not come up with an admin key:\n" + self.output)
        return self._key

    def ready_export(self) -> dict[str, Any]:
        """An offboarding request of the demo tenant, verified, approved and exported: the export."""
        status, request = self.api("POST", "/requests", {
            "tenant_id": DEMO_TENANT_ID, "requested_by": "cfo@demo-customer.example", "channel": "email",
            "churn_reason": "price"})
        assert status == 201, request
        for action, body in (("acknowledge", None), ("verify", {"note": "intended"}), ("approve", None)):
            status, answer = self.api("POST", f"/requests/{request['id']}/{action}", body)
            assert status == 200, answer
        status, export = self.api("POST", f"/requests/{request['id']}/exports", {})
        assert status == 202, export
        deadline = time.monotonic() + 60
        while export["status"] not in ("ready", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
            status, export = self.api("GET", f"/exports/{export['id']}")
            assert status == 200, export
        assert export["status"] == "ready", export
        return export

    def issue(self, export_id: int, max_downloads: int = 5) -> tuple[int, str, str]:
        """A new link: (link id, token, the customer's page URL on this service)."""
        status, link = self.api("POST", f"/exports/{export_id}/links", {
            "recipient": "it@demo-customer.example", "max_downloads": max_downloads})
        assert status == 201, link
        token = link["url"].rsplit("/d/", 1)[1]
        return link["id"], token, f"{self.base}/d/{token}"

    def link_row(self, export_id: int, link_id: int) -> dict[str, Any]:
        """The link as the API lists it, with its download history."""
        status, listed = self.api("GET", f"/exports/{export_id}/links")
        assert status == 200, listed
        return next(item for item in listed["items"] if item["id"] == link_id)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        self._pump.join(timeout=5)
        return code


@pytest.fixture
def start_service(service_env: dict[str, str]) -> Iterator[Callable[[], Service]]:
    """Starts ``offboard run`` on the private data when called; stops what is still running."""
    started: list[Service] = []

    def start() -> Service:
        started.append(Service(service_env))
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            assert running.stop() == 0, running.output


@pytest.fixture
def service(start_service: Callable[[], Service]) -> Service:
    return start_service()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium driven by Playwright; CI installs it, elsewhere its absence skips."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the browser tests leave a screenshot of every page they check, by backend."""
    backend = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    root = Path(os.environ.get("OFFBOARD_TEST_OUTPUT", Path(__file__).parents[2] / "test-output"))
    folder = root / "screenshots" / backend
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_page(page: Page, shots: Path, name: str) -> None:
    """Check a page as a person and an accessibility checker would: one h1, no serious or
    critical axe-core finding, no sideways scrolling; then keep its screenshot."""
    assert page.locator("h1").count() == 1, name
    violations = [v for v in Axe().run(page).response["violations"] if v["impact"] in SERIOUS]
    assert not violations, (name, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
                                   for v in violations])
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways"
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)


class Person:
    """One member of staff in their own browser context, signed in through the sign-in page."""

    def __init__(self, browser: Browser, base: str, email: str, shots: Path,
                 viewport: dict[str, int]) -> None:
        self.base, self.shots = base, shots
        self.context: BrowserContext = browser.new_context(viewport=viewport, accept_downloads=True,
                                                           bypass_csp=True)  # axe is injected
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("console", lambda message: self.problems.append(message.text)
                     if message.type == "error" and "status of 4" not in message.text else None)
        self.page.goto(f"{base}/admin/")
        assert "/admin/sign-in" in self.page.url
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        assert self.page.url == f"{base}/admin/", self.page.url

    def open(self, path: str, name: str) -> Page:
        """Go to a page and check it as a person and an accessibility checker would."""
        answer = self.page.goto(f"{self.base}{path}")
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        self.check(name)
        return self.page

    def check(self, name: str) -> None:
        check_page(self.page, self.shots, name)

    def close(self) -> None:
        assert not self.problems, self.problems
        self.context.close()


def create_user(env: dict[str, str], role: str) -> str:
    email = f"{role}@offboard.example"
    made = subprocess.run([sys.executable, "-m", "compliance.cli", "users", "create", "--email", email,
                           "--name", f"{role.title()} Person", "--role", role],
                          env={**env, "OFFBOARD_PASSWORD": PASSWORD}, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    return email


def database(env: dict[str, str]) -> Any:
    sqlite = Path(env["OFFBOARD_INSTANCE_DIR"]) / "offboard.db"
    return create_engine(env.get("DATABASE_URL") or f"sqlite:///{sqlite}")


@pytest.fixture
def people(service: Any, service_env: dict[str, str], browser: Browser, shots: Path) -> Iterator[Any]:
    service.admin_key()  # up, migrated and seeded
    opened: list[Person] = []

    def sign_in(role: str, viewport: dict[str, int] = DESKTOP) -> Person:
        opened.append(Person(browser, service.base, create_user(service_env, role), shots, viewport))
        return opened[-1]

    yield sign_in
    for person in opened:
        person.close()


def answer_survey(page: Page, *, reason: str, better: str, rating: int, come_back: str,
                  recommend: int) -> None:
    """Fill in and send the exit survey as a customer would, by its labels."""
    page.get_by_label(reason).check()
    page.get_by_label("2. What could we have done better?").fill(better)
    page.get_by_role("group", name="3. Overall, how would you rate your experience?").get_by_label(
        str(rating), exact=True).check()
    page.get_by_label(come_back).check()
    page.get_by_role("group", name="5. How likely are you to recommend us to a colleague?").get_by_label(
        str(recommend), exact=True).check()
    page.get_by_role("button", name="Send my answers").click()
