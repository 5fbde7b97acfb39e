"""One scenario, two clients, one outcome: a creator's day run once through the HTTP API and once
through the ``thotto`` command (which runs in the server, over its control socket, while
``python run.py`` holds the SQLite file). Both call the same use cases (thotto/usecases/), so the
records they leave and the errors they meet must be the same, and a change made through either
must show at once in what the API serves from its cache (the post lists, who a token is)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.acceptance.test_self_hosting import serving, thotto  # noqa: F401 (a fixture)

# These start run.py, whose demo sandbox listens on the default port 8765: under pytest-xdist they
# all run in one worker, one at a time.
pytestmark = pytest.mark.xdist_group("demo-port-8765")

# What a post's record says that does not depend on ids, clocks or the account's id.
COMPARED = ("status", "subreddit", "title", "kind", "text", "url", "nsfw", "spoiler", "flairId",
            "flairText", "mediaIds", "recurrence", "redditId", "error")


def comparable(post: dict) -> dict:
    return {field: post[field] for field in COMPARED}


def without_ids(message: str) -> str:
    """An error message with its post ids and times made alike (the two users' posts differ)."""
    message = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(\+00:00|Z)?", "<time>", message)
    return re.sub(r"\b\d+\b", "<n>", message)


class ThroughApi:
    """The scenario's steps as HTTP requests; each returns (record, error message)."""

    def __init__(self, url: str, token: str, admin_token: str, user_id: int):
        self.url, self.user_id = url, user_id
        self.http = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30)
        self.admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {admin_token}"}, timeout=30)

    @staticmethod
    def _outcome(response: httpx.Response) -> tuple[dict | list | None, str | None]:
        body = response.json()
        if response.status_code >= 400:
            return None, body.get("detail") or body["error"]
        return body, None

    def schedule(self, title: str, ahead: timedelta):
        when = (datetime.now(timezone.utc) + ahead).isoformat()
        record, error = self._outcome(self.http.post("/api/scheduled-posts", json={
            "subreddit": "test", "title": title, "text": "hello", "scheduledFor": when}))
        return (record["posts"] if record else None), error

    def edit(self, post_id: int, title: str):
        return self._outcome(self.http.patch(f"/api/scheduled-posts/{post_id}", json={"title": title}))

    def cancel(self, post_id: int):
        return self._outcome(self.http.delete(f"/api/scheduled-posts/{post_id}"))

    def show(self, post_id: int):
        return self._outcome(self.http.get(f"/api/scheduled-posts/{post_id}"))

    def mint_token(self) -> tuple[int, str]:
        created = self.http.post("/api/tokens", json={"name": "laptop"}).json()
        return created["id"], created["token"]

    def revoke_token(self, token_id: int):
        return self._outcome(self.http.delete(f"/api/tokens/{token_id}"))

    def set_tier(self, tier: str):
        return self._outcome(self.admin.put(f"/api/users/{self.user_id}/tier", json={"tier": tier}))


class ThroughCli:
    """The same steps as ``thotto`` commands (``--json``; a refusal is exit 2 and one line)."""

    def __init__(self, cwd, user: str):
        self.cwd, self.user = cwd, user

    def _run(self, *args: str):
        result = thotto(*args, "--json", cwd=self.cwd)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("thotto: "), result.stderr
            return None, lines[0].removeprefix("thotto: ")
        return json.loads(result.stdout), None

    def schedule(self, title: str, ahead: timedelta):
        return self._run("post", "schedule", "--user", self.user, "--subreddit", "test", "--title", title,
                         "--text", "hello", "--at", f"+{int(ahead.total_seconds())}s")

    def edit(self, post_id: int, title: str):
        return self._run("post", "edit", str(post_id), "--user", self.user, "--title", title)

    def cancel(self, post_id: int):
        return self._run("post", "cancel", str(post_id), "--user", self.user)

    def show(self, post_id: int):
        return self._run("post", "show", str(post_id), "--user", self.user)

    def mint_token(self) -> tuple[int, str]:
        created, error = self._run("token", "create", "--user", self.user, "--name", "laptop")
        assert error is None, error
        return created["id"], created["token"]

    def revoke_token(self, token_id: int):
        return self._run("token", "revoke", str(token_id))

    def set_tier(self, tier: str):
        return self._run("user", "set-tier", self.user, tier)


def setup_user(cwd, name: str) -> tuple[int, str]:
    """A pro user with a linked Reddit account (the demo sandbox's) and a token."""
    added = thotto("user", "add", name, "--tier", "pro", "--json", cwd=cwd)
    assert added.returncode == 0, added.stderr
    linked = thotto("account", "link", "--user", name, "--reddit-username", f"{name}_r", "--password-stdin",
                    cwd=cwd, stdin="pw\n")
    assert linked.returncode == 0, linked.stderr
    token = json.loads(thotto("token", "create", "--user", name, "--json", cwd=cwd).stdout)["token"]
    return json.loads(added.stdout)["id"], token


def run_scenario(client, api: httpx.Client) -> list:
    """A creator's day; returns what each step left (records made comparable, errors without
    their ids). ``api`` is the user's own HTTP client, to see what the server serves."""
    seen = []
    (post,), error = client.schedule("Scenario", timedelta(hours=2))
    seen.append(("schedule", comparable(post), error))
    assert [p["title"] for p in api.get("/api/scheduled-posts").json()["posts"]] == ["Scenario"]  # now cached

    duplicate, error = client.schedule("SCENARIO", timedelta(hours=3))
    seen.append(("duplicate", duplicate, without_ids(error)))
    seen.append(("too far", *client.schedule("Later", timedelta(days=9))))

    edited, error = client.edit(post["id"], "Scenario, edited")
    seen.append(("edit", comparable(edited), error))
    listed = api.get("/api/scheduled-posts").json()["posts"]  # the cached list was dropped
    seen.append(("listed after edit", [comparable(p) for p in listed], None))

    detail, error = client.show(post["id"])
    seen.append(("show", comparable(detail) | {"attempts": detail["attempts"]}, error))
    assert detail == api.get(f"/api/scheduled-posts/{post['id']}").json()

    cancelled, error = client.cancel(post["id"])
    seen.append(("cancel", comparable(cancelled), error))
    again, error = client.cancel(post["id"])
    seen.append(("cancel again", again and comparable(again), error and without_ids(error)))
    seen.append(("listed after cancel", [comparable(p) for p in api.get("/api/scheduled-posts").json()["posts"]], None))

    token_id, token = client.mint_token()
    signed_in = {"authorization": f"Bearer {token}"}
    assert api.get("/api/me", headers=signed_in).status_code == 200  # now cached
    revoked, error = client.revoke_token(token_id)
    seen.append(("revoke", revoked is not None and bool(revoked.get("revokedAt") or revoked.get("revoked_at")), error))
    # At once, though the server had this token's user in its cache a moment ago.
    seen.append(("revoked token", api.get("/api/me", headers=signed_in).status_code, None))

    assert api.get("/api/me").json()["tier"] == "pro"  # the user's token is cached as pro
    changed, error = client.set_tier("free")
    seen.append(("set tier", changed["tier"], error))
    seen.append(("tier seen", api.get("/api/me").json()["tier"], None))
    seen.append(("schedule as free", *client.schedule("Free now", timedelta(hours=2))))
    return seen


def test_a_scenario_through_the_api_and_through_the_cli_ends_the_same(serving, tmp_path):  # noqa: F811
    url, admin_token = serving
    api_user_id, api_token = setup_user(tmp_path, "through_api")
    _, cli_token = setup_user(tmp_path, "through_cli")
    api_of_api_user = httpx.Client(base_url=url, headers={"authorization": f"Bearer {api_token}"}, timeout=30)
    api_of_cli_user = httpx.Client(base_url=url, headers={"authorization": f"Bearer {cli_token}"}, timeout=30)

    through_api = run_scenario(ThroughApi(url, api_token, admin_token, api_user_id), api_of_api_user)
    through_cli = run_scenario(ThroughCli(tmp_path, "through_cli"), api_of_cli_user)

    for api_step, cli_step in zip(through_api, through_cli, strict=True):
        assert api_step == cli_step
    outcome = dict((step, (record, error)) for step, record, error in through_api)
    assert outcome["duplicate"][1].startswith("Post <n> already has this title in r/test")
    assert outcome["too far"] == (None, "Scheduling more than 7 days ahead requires Premium tier")
    assert [post["title"] for post in outcome["listed after edit"][0]] == ["Scenario, edited"]
    assert outcome["cancel"][0]["status"] == outcome["cancel again"][0]["status"] == "cancelled"  # idempotent
    assert outcome["listed after cancel"][0][0]["status"] == "cancelled"
    assert outcome["revoked token"][0] == 401
    assert outcome["tier seen"][0] == "free"
    assert outcome["schedule as free"] == (None, "Scheduling requires Pro or Premium tier")
