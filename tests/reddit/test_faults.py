"""Failures over HTTP, injected through the sandbox, and the job outcome each one maps onto."""

import socket
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import trio

from tests.reddit.conftest import make_config
from thotto.engine.errors import DeferJob, PermanentJobError, RetryableJobError
from thotto.errors import RedditOutcomeUnknown, RedditPermanent, RedditRateLimited, RedditRetryable
from thotto.reddit import RedditClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_on_reads_are_retryable(sandbox, alice, status):
    await sandbox.faults(errors=[{"status": status, "path": "/r/"}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.about("test")
    error = caught.value
    assert not isinstance(error, RedditOutcomeUnknown)
    assert isinstance(error, RetryableJobError)
    assert (error.status, error.error_type) == (status, f"HTTP_{status}")


async def test_server_error_on_submit_may_have_posted(sandbox, alice):
    await sandbox.faults(errors=[{"status": 502, "path": "/api/submit", "count": 1}])
    with pytest.raises(RedditOutcomeUnknown) as caught:
        await alice.submit("test", "Gateway trouble", text="x")
    assert caught.value.status == 502
    await alice.submit("test", "Gateway trouble", text="x")  # the rule fired once
    assert len(await sandbox.posts()) == 1


async def test_408_is_retryable_and_certain_not_to_have_posted(sandbox, alice):
    await sandbox.faults(errors=[{"status": 408, "path": "/api/submit"}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.submit("test", "Slow client", text="x")
    assert not isinstance(caught.value, RedditOutcomeUnknown)


async def test_error_rates_apply_to_a_share_of_requests(sandbox, alice):
    await alice.me()
    await sandbox.faults(errors=[{"status": 500, "rate": 0.5, "path": "/api/v1/me"}])
    outcomes = []
    for _ in range(40):
        try:
            await alice.me()
            outcomes.append("ok")
        except RedditRetryable:
            outcomes.append("error")
    assert 0 < outcomes.count("error") < 40  # 40 fair coin flips: all one side has odds 2^-39


@pytest.mark.parametrize("path, call, outcome_unknown", [
    ("/r/", lambda account: account.about("test"), False),
    ("/api/submit", lambda account: account.submit("test", "Too slow", text="x"), True),
])
async def test_timeouts_are_retryable_and_a_submission_may_have_posted(sandbox, path, call,
                                                                      outcome_unknown):
    async with RedditClient(make_config(sandbox.url, timeout_seconds=0.3)) as reddit:
        account = reddit.account_from_password("alice", "pw")
        await account.me()
        await sandbox.faults(latency=2.0, latency_path=path)
        with pytest.raises(RedditRetryable) as caught:
            await call(account)
    assert caught.value.error_type == "TIMEOUT"
    assert isinstance(caught.value, RedditOutcomeUnknown) == outcome_unknown


async def test_refused_connection_is_retryable_even_for_a_submission(sandbox):
    async with RedditClient(make_config(f"http://127.0.0.1:{free_port()}")) as reddit:
        with pytest.raises(RedditRetryable) as caught:
            await reddit.account_from_password("alice", "pw").submit("test", "Nobody home", text="x")
    assert caught.value.error_type == "CONNECT_FAILED"
    assert not isinstance(caught.value, RedditOutcomeUnknown)


async def test_token_endpoint_outage_is_retryable(sandbox, alice):
    await sandbox.faults(errors=[{"status": 503, "path": "/api/v1/access_token"}])
    with pytest.raises(RedditRetryable) as caught:
        await alice.me()
    assert caught.value.status == 503


async def test_dropped_connection_after_accepting_then_reconcile_publishes_exactly_once(sandbox, alice):
    """The publisher's recovery path: an unknown outcome is settled from the account's
    submissions, never by posting again."""
    await sandbox.faults(drop_after_accept=1)
    armed_at = trio.current_time(), alice.client.wall_clock()
    with pytest.raises(RedditOutcomeUnknown) as caught:
        await alice.submit("test", "Exactly once", text="x")
    assert caught.value.error_type == "CONNECTION_LOST"

    found = await alice.find_submission("test", "Exactly once", since=armed_at[1] - 5)
    assert found is not None
    posts = await sandbox.posts()
    assert [post["id"] for post in posts] == [found.id]
    # A second, unrelated lookup finds nothing for a title never posted.
    assert await alice.find_submission("test", "Never posted", since=armed_at[1] - 5) is None


async def test_forbidden_submission_is_permanent(sandbox, alice):
    await sandbox.faults(errors=[{"status": 403, "path": "/api/submit"}])
    with pytest.raises(RedditPermanent) as caught:
        await alice.submit("test", "No", text="x")
    assert (caught.value.status, caught.value.error_type) == (403, "HTTP_403")
    assert isinstance(caught.value, PermanentJobError)


async def test_429_with_headers_defers_until_the_reset(sandbox):
    async with RedditClient(make_config(sandbox.url, max_queue_seconds=5)) as reddit:
        account = reddit.account_from_password("alice", "pw")
        await account.me()
        await sandbox.faults(too_many_requests={"count": 1, "reset": 30})
        before = datetime.now(timezone.utc)
        with pytest.raises(RedditRateLimited) as caught:
            await account.submit("test", "Too many", text="x")
        error = caught.value
        assert isinstance(error, DeferJob)
        assert (error.status, error.error_type, error.wait_seconds) == (429, "HTTP_429", 30)
        assert before + timedelta(seconds=29) <= error.until <= before + timedelta(seconds=35)

        # The whole app is paused; a request that would wait longer than max_queue_seconds is
        # deferred at once instead of holding a worker, and nothing is sent.
        assert reddit.limiter.delay() == pytest.approx(30, abs=2)
        with pytest.raises(RedditRateLimited) as caught:
            await account.submit("test", "Still too many", text="x")
        assert caught.value.error_type == "CLIENT_RATE_LIMIT"
    assert await sandbox.posts() == []


@pytest.mark.parametrize("rule, wait", [
    ({}, 120),  # "Take a break for 2 minutes"
    ({"message": "you are doing that too much. try again in 7 seconds."}, 7),
    ({"message": "you are doing that too much. try again in 9 minutes.", "seconds": 565.5}, 565.5),
    ({"message": "slow down"}, 60),  # no wait named: the default
])
async def test_ratelimit_errors_defer_with_the_parsed_wait(sandbox, alice, rule, wait):
    await sandbox.faults(ratelimit={"count": 1, **rule})
    with pytest.raises(RedditRateLimited) as caught:
        await alice.submit("test", "Slow down", text="x")
    error = caught.value
    assert (error.error_type, error.field, error.wait_seconds) == ("RATELIMIT", "ratelimit", wait)
    assert error.until.tzinfo is not None
    # An account's action limit does not pause the app's other requests.
    assert alice.client.limiter.delay() < 1
    await alice.submit("test", "Slow down", text="x")
    assert len(await sandbox.posts()) == 1


async def test_headers_are_read_and_a_spent_budget_gets_429(sandbox, alice):
    await sandbox.configure(rate_budget=5)
    await alice.me()
    assert (alice.client.limiter.last.used, alice.client.limiter.last.remaining) == (1, 4.0)
    # Another process with the same OAuth client spends the rest of the window's budget.
    token = await alice._access_token()
    async with httpx.AsyncClient(base_url=sandbox.url) as other:
        for _ in range(4):
            response = await other.get("/api/v1/me", headers={"Authorization": f"bearer {token}"})
            assert response.status_code == 200
    with pytest.raises(RedditRateLimited) as caught:
        await alice.me()
    error = caught.value
    assert (error.status, error.error_type) == (429, "HTTP_429")
    assert error.wait_seconds == alice.client.limiter.last.reset_seconds
    assert 0 < error.wait_seconds <= 600


@pytest.mark.parametrize("subreddit, status, error_type", [
    ("private_sub", 403, "SUBREDDIT_PRIVATE"),
    ("banned_sub", 404, "SUBREDDIT_BANNED"),
    ("does_not_exist", 404, "HTTP_404"),
])
@pytest.mark.parametrize("read", ["about", "post_requirements", "link_flairs"])
async def test_unreadable_subreddits_are_permanent(sandbox, alice, subreddit, status, error_type, read):
    with pytest.raises(RedditPermanent) as caught:
        await getattr(alice, read)(subreddit)
    assert (caught.value.status, caught.value.error_type) == (status, error_type)
    assert f"r/{subreddit}" in str(caught.value)
