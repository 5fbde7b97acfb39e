"""The rate limiter's arithmetic in virtual time, and the parsers of Reddit's rate-limit signals."""

import httpx
import pytest
import trio

from thotto.reddit import RateLimiter, RateLimitHeaders, parse_rate_limit_headers, parse_wait


async def request_times(limiter: RateLimiter, count: int) -> list[float]:
    """Start ``count`` concurrent requests; the Trio times at which each got its slot."""
    start = trio.current_time()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return sorted(times)


async def test_requests_are_spaced_evenly_not_burst(autojump_clock):
    limiter = RateLimiter(100)  # 100 a minute: one every 0.6 s
    times = await request_times(limiter, 5)
    assert times == pytest.approx([0.0, 0.6, 1.2, 1.8, 2.4])


async def test_an_idle_limiter_lets_the_next_request_through_at_once(autojump_clock):
    limiter = RateLimiter(60)
    await request_times(limiter, 2)
    await trio.sleep(10)
    assert limiter.delay() == 0
    assert await request_times(limiter, 2) == pytest.approx([0.0, 1.0])


async def test_burst_allows_that_many_back_to_back_then_spaces(autojump_clock):
    limiter = RateLimiter(60, burst=3)
    assert await request_times(limiter, 5) == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


async def test_server_headers_can_only_slow_the_budget_down(autojump_clock):
    limiter = RateLimiter(100)
    # 10 requests left for 30 s: one every 3 s, slower than our own 0.6 s.
    limiter.update(RateLimitHeaders(used=990, remaining=10.0, reset_seconds=30))
    assert limiter.interval == pytest.approx(3.0)
    assert await request_times(limiter, 3) == pytest.approx([0.0, 3.0, 6.0])
    # Plenty left: our own budget rules again.
    limiter.update(RateLimitHeaders(used=5, remaining=995.0, reset_seconds=590))
    assert limiter.interval == pytest.approx(0.6)


async def test_an_exhausted_budget_waits_for_the_reset(autojump_clock):
    limiter = RateLimiter(100)
    limiter.update(RateLimitHeaders(used=1000, remaining=0.0, reset_seconds=42))
    assert limiter.delay() == pytest.approx(42)
    assert await request_times(limiter, 2) == pytest.approx([42.0, 42.6])


async def test_pause_for_holds_every_request(autojump_clock):
    limiter = RateLimiter(100)
    limiter.pause_for(5)
    assert await request_times(limiter, 1) == pytest.approx([5.0])
    limiter.update(None)  # no headers: nothing changes
    assert limiter.interval == pytest.approx(0.6)


async def test_cancelled_waiters_leave_the_others_on_schedule(autojump_clock):
    limiter = RateLimiter(60)
    await limiter.acquire()  # slot at 0
    with trio.move_on_after(0.5):
        await limiter.acquire()  # slot at 1, abandoned
    assert await request_times(limiter, 1) == pytest.approx([1.5])  # next slot is 2.0, now 0.5


def test_bad_limiter_arguments_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(10, burst=0)


def test_rate_limit_headers_are_parsed_case_insensitively():
    headers = httpx.Headers({"X-Ratelimit-Used": "12", "X-Ratelimit-Remaining": "988.0",
                             "X-Ratelimit-Reset": "412"})
    assert parse_rate_limit_headers(headers) == RateLimitHeaders(12, 988.0, 412.0)


@pytest.mark.parametrize("headers", [
    {},
    {"x-ratelimit-remaining": "5"},
    {"x-ratelimit-remaining": "many", "x-ratelimit-reset": "3"},
    {"x-ratelimit-remaining": "nan", "x-ratelimit-reset": "3"},
])
def test_missing_or_malformed_rate_limit_headers_are_ignored(headers):
    assert parse_rate_limit_headers(headers) is None


@pytest.mark.parametrize("message, seconds", [
    ("Looks like you've been doing that a lot. Take a break for 2 minutes before trying again.", 120),
    ("you are doing that too much. try again in 7 seconds.", 7),
    ("you are doing that too much. try again in 9 minutes.", 540),
    ("Take a break for 1 minute before trying again.", 60),
    ("try again in 500 milliseconds", 0.5),
    ("try again in 1 hour", 3600),
])
def test_rate_limit_messages_name_the_wait(message, seconds):
    assert parse_wait(message) == pytest.approx(seconds)


def test_a_message_without_a_wait_gives_none():
    assert parse_wait("slow down") is None


async def test_one_client_spaces_the_requests_of_all_its_accounts(autojump_clock):
    """In-process transport (no sockets), so virtual time is exact: six concurrent requests
    from two accounts of one app go out one second apart at 60 a minute."""
    from thotto.reddit import RedditClient, RedditConfig

    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json={"access_token": "t", "token_type": "bearer",
                                             "expires_in": 3600, "scope": "*"})
        sent.append(trio.current_time())
        return httpx.Response(200, json={"name": "someone"}, headers={
            "x-ratelimit-used": "1", "x-ratelimit-remaining": "999.0", "x-ratelimit-reset": "600"})

    config = RedditConfig(client_id="app", user_agent="test:thotto:0 (by /u/x)",
                          token_url="http://reddit.test", api_url="http://reddit.test",
                          requests_per_minute=60)
    async with RedditClient(config, transport=httpx.MockTransport(handler)) as reddit:
        accounts = [reddit.account_from_password(name, "pw") for name in ("ann", "ben")]
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                for account in accounts:
                    nursery.start_soon(account.me)
    assert [round(at - start, 6) for at in sent] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
