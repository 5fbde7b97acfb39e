"""The dashboard page (at /operator) in a real headless Chromium, driven through chromedriver's WebDriver HTTP
protocol: sign in with a token, see the same numbers as the API, retry a failure, and save a
screenshot (``THOTTO_UPDATE_SCREENSHOT=1`` also copies it to docs/dashboard.png)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import trio

from tests.monitoring.test_endpoints import run_jobs
from tests.monitoring.test_failures import failed_post
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import PostStatus
from thotto.usecases.accounts import link_with_password

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


def need_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One headless Chromium session through a chromedriver process this test started."""

    def __init__(self, http: httpx.AsyncClient, session: str):
        self.http, self.session = http, session

    async def command(self, method: str, path: str, body: dict | None = None):
        response = await self.http.request(method, f"/session/{self.session}{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()["value"]

    async def open(self, url: str) -> None:
        await self.command("POST", "/url", {"url": url})

    async def run(self, script: str, *args):
        return await self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    async def find(self, css: str) -> str:
        return (await self.command("POST", "/element", {"using": "css selector", "value": css}))[ELEMENT]

    async def type(self, css: str, text: str) -> None:
        await self.command("POST", f"/element/{await self.find(css)}/value", {"text": text})

    async def click(self, css: str) -> None:
        await self.command("POST", f"/element/{await self.find(css)}/click", {})

    async def text(self, css: str) -> str:
        return await self.run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    async def wait_for(self, script: str, *args, timeout: float = 20.0):
        with trio.fail_after(timeout):
            while not (found := await self.run(script, *args)):
                await trio.sleep(0.1)
        return found

    async def screenshot(self) -> bytes:
        return base64.b64decode(await self.command("GET", "/screenshot"))


@pytest.fixture
async def browser():
    need_browser()
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http.get("/status")).json()["value"]["ready"]:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.1)
            options = {"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                                    "--disable-dev-shm-usage", "--window-size=1400,1700"]}
            created = await http.post("/session", json={"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})
            assert created.status_code == 200, created.text
            session = created.json()["value"]["sessionId"]
            try:
                yield Browser(http, session)
            finally:
                with trio.CancelScope(shield=True):
                    await http.delete(f"/session/{session}")
    finally:
        driver.terminate()
        driver.wait(timeout=10)


async def test_the_dashboard_shows_what_the_api_says(api, browser, tmp_path):
    await run_jobs(api)  # queue "work": completed jobs and two dead ones
    refused = await failed_post(api)  # a post Reddit refused: edited, never retried
    await failed_post(api, subreddit="nosuchsub", title="Still to fix")  # stays in the list
    admin = api.admin
    await link_with_password(api.app.scheduler, admin.id, "admin_acct", "secret-password")
    for hours in (2, 30, 80):
        body = {"subreddit": "test", "title": f"Upcoming in {hours} h", "text": "soon",
                "scheduledFor": (utcnow() + timedelta(hours=hours)).isoformat()}
        assert (await admin.client.post("/api/scheduled-posts", json=body)).status_code == 201

    await browser.open(api.url + "/operator")
    await browser.wait_for("return !document.querySelector('#signin').hidden")
    await browser.type("#token", admin.token)
    await browser.click("#signin-button")
    await browser.wait_for("return document.body.dataset.loaded === 'true'")
    assert await browser.run("return sessionStorage.getItem('thotto.token')") == admin.token

    queues = {q["queue"]: q for q in (await admin.client.get("/api/monitoring/queue-metrics")).json()["queues"]}
    work = queues["work"]
    for column in ("completed", "dead", "waiting", "active"):
        assert await browser.text(f"#q-work-{column}") == str(work[column]), column
    charts = await browser.run("return document.querySelectorAll('#charts figure').length")
    assert charts == len(queues)
    assert await browser.run("return document.querySelectorAll('#timeline circle.post').length") == 3
    assert await browser.text("#health") in ("healthy", "degraded")
    assert await browser.run("return document.querySelectorAll('#breakers tbody tr').length") >= 1
    health = (await admin.client.get("/api/monitoring/queue-health")).json()
    assert (await browser.text("#refused-recent")).isdigit() and "refusedRecent" in health
    assert "alert_webhook_url" in await browser.text("#deliveries-note")  # none configured here

    failures = (await admin.client.get("/api/monitoring/failures")).json()["failures"]
    failed = sorted(f["jobId"] for f in failures if f["retry"]["retryable"])
    shown = await browser.run("return [...document.querySelectorAll('#failures tbody tr[data-job]')].map(r => +r.dataset.job)")
    assert sorted(shown) == sorted(f["jobId"] for f in failures) and len(failed) == 2
    assert len(failures) == 4
    # The refused post shows its post, user and title, and offers an edit instead of Retry.
    row = f"#failures tr[data-job='{refused.job_id}']"
    assert "pro" in await browser.text(row) and "Typo in the subreddit" in await browser.text(row)
    assert await browser.run("return document.querySelector(arguments[0] + ' button.retry')", row) is None
    await browser.click(f"{row} button.edit")
    await browser.wait_for("return document.querySelector('#failures .edit-form')")
    await browser.run("document.querySelector('#failures .edit-form input[name=subreddit]').value = 'test'")
    await browser.click("#failures .edit-form button[type=submit]")
    with trio.fail_after(20):
        while (await api.app.store.get_post(refused.id)).status is PostStatus.FAILED:
            await trio.sleep(0.1)
    assert (await api.app.store.get_post(refused.id)).content.subreddit == "test"

    await browser.wait_for("return document.querySelector(arguments[0])", f"#failures tr[data-job='{failed[0]}'] button.retry")
    await browser.click(f"#failures tr[data-job='{failed[0]}'] button.retry")
    await browser.wait_for("return document.querySelector(arguments[0]).textContent === 'Retried'",
                           f"#failures tr[data-job='{failed[0]}'] button.retry")
    assert len(await api.app.engine.attempts(failed[0])) >= 1  # redriven: it runs again

    # Pausing a queue from its row, then finding its jobs and opening one.
    await browser.click("#queues tr[data-queue='work'] button.pause")
    with trio.fail_after(20):
        while not await api.app.store.paused_queues():
            await trio.sleep(0.1)
    await browser.wait_for("return document.querySelector('#queues tr[data-queue=work] button.pause').textContent === 'Resume'")
    await browser.run("document.querySelector('#job-search input[name=queue]').value = 'work'")
    await browser.click("#job-search button[type=submit]")
    # The search's own answer, not the rows of the search the page made when it opened.
    await browser.wait_for("const rows = [...document.querySelectorAll('#jobs tbody tr')]; "
                           "return rows.length >= 5 && rows.every(r => r.cells[1].textContent === 'work')")
    await browser.click("#jobs tbody tr")
    await browser.wait_for("return !document.querySelector('#job-detail').hidden && "
                           "document.querySelector('#job-detail h2').textContent.startsWith('Job ')")
    await browser.wait_for("return document.body.dataset.loaded === 'true'")

    picture = await browser.screenshot()
    assert picture.startswith(b"\x89PNG")
    (tmp_path / "dashboard.png").write_bytes(picture)
    await browser.command("POST", "/window/rect", {"width": 390, "height": 2400})
    await trio.sleep(0.5)  # the layout reflows (nothing to wait on in the page itself)
    phone = await browser.screenshot()
    (tmp_path / "dashboard-phone.png").write_bytes(phone)
    width = await browser.run("return document.documentElement.scrollWidth")
    assert width <= 400, width  # nothing wider than the phone: tables scroll in their sections
    if os.environ.get("THOTTO_UPDATE_SCREENSHOT"):
        DOCS.mkdir(exist_ok=True)
        (DOCS / "dashboard.png").write_bytes(picture)
        (DOCS / "dashboard-phone.png").write_bytes(phone)


async def test_a_token_that_is_not_an_admin_token_is_refused(api, browser):
    await browser.open(api.url + "/operator")
    await browser.wait_for("return !document.querySelector('#signin').hidden")
    await browser.type("#token", api.pro.token)
    await browser.click("#signin-button")
    message = await browser.wait_for("return document.querySelector('#error').textContent")
    assert "admin" in message
    assert await browser.run("return sessionStorage.getItem('thotto.token')") is None
