"""The browser test harness: a REAL Thotto process (``python -m thotto serve --demo``: its own
data directory, a free port, the built-in Reddit sandbox) and Debian's Chromium driven through
Playwright's sync API (Playwright's own driver, never a downloaded browser).

Fixtures:

- ``thotto_app`` (one per test module): the running process, as :class:`ThottoApp` (its URL,
  the admin's API token and set-password link as the first start printed them, the sandbox's
  URL, and ``cli(...)`` to run ``thotto`` commands against it);
- ``browser`` (one per session): Chromium;
- ``desktop`` (1280x800) and ``phone`` (390x844): a fresh page each (own cookies), and ``page``,
  parametrised over both, for tests that must hold at either width;
- ``screenshot(page, name)``: saves ``NAME-desktop.png`` or ``NAME-phone.png`` into the test's
  tmp dir and, with ``THOTTO_UPDATE_SCREENSHOTS=1``, into ``docs/screenshots/``.

Without Chromium or Playwright the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.support.process_output import Output

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixtures then skip, or fail under CI
    expect = None

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"
#: How long a page may take to show what a test waits for (a loaded machine is slow).
WAIT_MS = 20_000


def missing(what: str) -> None:
    message = f"{what}; the browser tests need it (.ci/run installs chromium; pip install -e '.[test]')"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ThottoApp:
    """A ``thotto serve --demo`` process and what its first start printed."""

    url: str
    data_dir: Path
    process: subprocess.Popen
    output: Output
    admin_token: str
    admin_link: str
    sandbox_url: str
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Run ``thotto ARGS`` against this installation (over its control socket)."""
        return subprocess.run([sys.executable, "-m", "thotto", *args, "--data-dir", str(self.data_dir)],
                              cwd=self.data_dir.parent, input=stdin, capture_output=True, text=True,
                              timeout=60, env=self.env)

    def new_user(self, name: str, tier: str = "pro", role: str = "user") -> str:
        """Add a user as an admin would (``thotto user add``); the set-password link it printed."""
        added = self.cli("user", "add", name, "--tier", tier, "--role", role)
        assert added.returncode == 0, added.stderr
        return printed_link(added.stderr)

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token}"}, timeout=30)

    def sandbox(self) -> httpx.Client:
        return httpx.Client(base_url=self.sandbox_url, timeout=30)


def printed_link(text: str) -> str:
    found = re.search(r"(http://\S+/set-password/\S+)", text)
    assert found, f"no set-password link in:\n{text}"
    return found[1]


def start_thotto(directory: Path, **env: str) -> ThottoApp:
    """Start ``python -m thotto serve --demo`` with its data in ``directory`` on a free port
    (known in advance, so Reddit's redirect URI reaches it) and wait until it serves."""
    port = free_port()
    data_dir = directory / "thotto-data"
    environment = {**os.environ, "THOTTO_API_PORT": str(port), "THOTTO_DEMO_SANDBOX_PORT": "0",
                   "THOTTO_DATA_DIR": str(data_dir), **env}
    process = subprocess.Popen([sys.executable, "-m", "thotto", "serve", "--demo"], cwd=directory,
                               stderr=subprocess.PIPE, text=True, env=environment)
    output = Output(process)
    try:
        url = output.wait_for(r"serving \(API on (http://\S+);", timeout=90)[1]
        sandbox = output.wait_for(r"demo: Reddit is the sandbox at (http://\S+) ")[1]
        link = printed_link(output.wait_for(r"(http://\S+/set-password/\S+)")[0])
        token = output.wait_for(r"export THOTTO_TOKEN=(\S+)")[1]
    except BaseException:
        stop(process)
        raise
    return ThottoApp(url, data_dir, process, output, token, link, sandbox, environment)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def thotto_app(tmp_path_factory) -> Iterator[ThottoApp]:
    # Every test of a module signs in from 127.0.0.1: the per-address limit is not theirs to hit
    # (the rate-limit tests start a process of their own with tight limits).
    app = start_thotto(tmp_path_factory.mktemp("thotto"), THOTTO_SIGN_IN_FAILURES_PER_ADDRESS="1000")
    try:
        yield app
    finally:
        stop(app.process)


@pytest.fixture(scope="session")
def playwright_instance():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    chromium = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


def _page(browser, viewport: dict, **options):
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.viewport_name = "phone" if viewport["width"] < 600 else "desktop"
    return context, page


@pytest.fixture
def desktop(browser):
    context, page = _page(browser, DESKTOP)
    yield page
    context.close()


@pytest.fixture
def phone(browser):
    context, page = _page(browser, PHONE, is_mobile=True, has_touch=True)
    yield page
    context.close()


@pytest.fixture(params=["desktop", "phone"])
def page(request, browser):
    """A fresh page at desktop width, then (the test runs again) at phone width."""
    if request.param == "desktop":
        context, page = _page(browser, DESKTOP)
    else:
        context, page = _page(browser, PHONE, is_mobile=True, has_touch=True)
    yield page
    context.close()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, name)``: the whole page as NAME-desktop.png or NAME-phone.png in the
    test's tmp dir (returned), and in docs/screenshots/ with THOTTO_UPDATE_SCREENSHOTS=1."""

    def take(page, name: str) -> Path:
        file_name = f"{name}-{getattr(page, 'viewport_name', 'desktop')}.png"
        path = tmp_path / file_name
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("THOTTO_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / file_name)
        return path

    return take


# --- steps many tests take --------------------------------------------------------------------


def set_password(page, link: str, password: str = PASSWORD) -> None:
    """Open a set-password link, set the password; the browser is then signed in."""
    page.goto(link)
    page.get_by_label("New password").fill(password)
    page.get_by_label("The same password again").fill(password)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def sign_in(page, app: ThottoApp, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{app.url}/sign-in")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def new_signed_in_user(page, app: ThottoApp, name: str, **options) -> None:
    set_password(page, app.new_user(name, **options))


def session_cookie(page) -> dict | None:
    return next((cookie for cookie in page.context.cookies() if cookie["name"] == "thotto_session"), None)


def api_json(text: str):
    return json.loads(text)
