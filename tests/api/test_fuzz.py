"""Schemathesis drives the API from its own OpenAPI document against a real ``run.py --demo``
process: no request may cause a 5xx or a response that breaks the document, and the fuzzing
user's requests must not touch another user's posts (the canaries) or duplicate anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.support.process_output import Output

# These start run.py, whose demo sandbox listens on the default port 8765: under pytest-xdist they
# all run in one worker, one at a time.
pytestmark = pytest.mark.xdist_group("demo-port-8765")

# Excluded: it expects every schema-valid body to be accepted, but business rules (a time in the
# future, a linked account, the tier's horizon, duplicates) refuse some with 403/409/422 by design.
# ignored_auth: it replays requests "without auth" but keeps the headers given to
# call_and_validate, so it sees our token; tests/api/test_auth_and_users.py checks 401s directly.
EXCLUDED = [positive_data_acceptance, ignored_auth]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("THOTTO_FUZZ_EXAMPLES", "25"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``run.py`` in demo mode, an admin with canary posts, and a premium user to fuzz as."""

    def __init__(self, tmp: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "THOTTO_API_PORT": self.url.rsplit(":", 1)[1],
               "THOTTO_API_REQUESTS_PER_MINUTE": "1000000", "THOTTO_API_BURST": "100000"}
        self.process = subprocess.Popen([sys.executable, str(ROOT / "run.py")], cwd=tmp,
                                        stderr=subprocess.PIPE, text=True, env=env)
        self.output = Output(self.process)
        token = self.output.wait_for(r"THOTTO_TOKEN=(\S+)")[1]
        self.admin = {"authorization": f"Bearer {token}"}
        self.fuzzer = self._fuzzing_user()
        self.canaries = self._canary_posts()

    def _fuzzing_user(self) -> dict:
        user = httpx.post(f"{self.url}/api/users", json={"name": "fuzzer", "tier": "premium"},
                          headers=self.admin).json()
        token = httpx.post(f"{self.url}/api/users/{user['id']}/tokens", json={}, headers=self.admin).json()
        headers = {"authorization": f"Bearer {token['token']}"}
        # One client for both steps, as a browser would be: it keeps the link's cookie, so the
        # callback the sandbox's consent redirects back to links the account at once.
        with httpx.Client(headers=headers) as browser:
            start = browser.post(f"{self.url}/api/accounts/link").json()
            linked = browser.get(start["authorizeUrl"], follow_redirects=True)
        assert linked.status_code == 200, linked.text
        return headers

    def _canary_posts(self) -> list[dict]:
        when = (datetime.now(timezone.utc) + timedelta(days=20)).isoformat()
        body = {"posts": [{"subreddit": "test", "title": f"canary {i}", "text": "keep me", "scheduledFor": when}
                          for i in range(3)]}
        response = httpx.post(f"{self.url}/api/scheduled-posts/batch", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()["posts"]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("fuzz"))
    yield server
    canaries = httpx.get(f"{server.url}/api/scheduled-posts", params={"limit": 500}, headers=server.admin).json()
    assert [(p["id"], p["title"], p["status"]) for p in canaries["posts"]] == [
        (p["id"], p["title"], "scheduled") for p in server.canaries]
    assert server.stop() == 0


def test_no_request_breaks_the_api(server):
    """Every operation of the document, fuzzed in turn (schemathesis's pytest plugin does not
    work with this pytest, so the operations are driven through hypothesis directly)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.call_and_validate(headers=server.fuzzer, timeout=10, excluded_checks=EXCLUDED)

        fuzz()


# --- scheduling at the edges -----------------------------------------------------------------------
# The document's schemas say what a valid body looks like, so schemathesis rarely sends what lies
# at their edges. These strategies do: date-times near the ends of the calendar with any offset
# (some have no UTC equivalent), any text as a title, url, body or flair, and recurrences.

OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
CALENDAR_EDGES = st.one_of(
    st.datetimes(max_value=datetime(1, 1, 2), timezones=OFFSETS),
    st.datetimes(min_value=datetime(9999, 12, 31), timezones=OFFSETS),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=OFFSETS),
).map(datetime.isoformat)
ANY_TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "\u200b", "a\x00b", "x\n", "http://[::1"])
RECURRENCES = st.fixed_dictionaries({"frequency": st.sampled_from(["daily", "weekly", "monthly", "daily\n"])},
                                    optional={"until": CALENDAR_EDGES, "count": st.integers(-2, 2000),
                                              "interval": st.integers(-2, 400),
                                              "timezone": st.sampled_from(["UTC", "Europe/Paris", "", "\x00"])})
SCHEDULE_BODIES = st.fixed_dictionaries(
    {"subreddit": st.sampled_from(["test"] * 6 + ["test\n", "te\x01st"]), "scheduledFor": CALENDAR_EDGES,
     "title": ANY_TEXT | st.just("Fuzzed title")},
    optional={"text": ANY_TEXT, "url": ANY_TEXT, "flairText": ANY_TEXT,
              "kind": st.sampled_from(["self", "link"]), "recurrence": RECURRENCES})


def assert_refused_or_accepted(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and body["detail"], body


def test_scheduling_at_the_edges_never_breaks_the_api(server):
    with httpx.Client(base_url=server.url, headers=server.fuzzer, timeout=10) as client:

        @given(body=SCHEDULE_BODIES, batch=st.booleans())
        @settings(max_examples=EXAMPLES * 8, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def fuzz(body, batch):
            if batch:
                response = client.post("/api/scheduled-posts/batch", json={"posts": [body, body]})
            else:
                response = client.post("/api/scheduled-posts", json=body)
            assert_refused_or_accepted(response)
            when = body["scheduledFor"]
            assert_refused_or_accepted(client.get("/api/scheduled-posts", params={"from": when, "to": when}))

        fuzz()
