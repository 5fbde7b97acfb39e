"""Reddit's rate limits: reading the ``X-Ratelimit-*`` headers and spacing requests.

Reddit allows each OAuth client about 100 queries per minute, averaged over a 10-minute window,
and tells the client where it stands on every response::

    X-Ratelimit-Used: 12          requests made in the current window
    X-Ratelimit-Remaining: 988.0  requests left in it (a float)
    X-Ratelimit-Reset: 412        seconds until the window ends

:class:`RateLimiter` spaces requests evenly instead of bursting through the budget and then
stalling until the window resets: each request gets a slot at least ``60 / requests_per_minute``
seconds after the previous one, and further apart when the server says fewer requests remain
than time would allow (``reset / remaining``). With nothing left it waits for the reset. All
times are Trio's clock, so the arithmetic is exact under ``autojump_clock``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import msgspec
import trio


class RateLimitHeaders(msgspec.Struct, frozen=True):
    """The ``X-Ratelimit-*`` headers of one response."""

    used: int
    remaining: float
    reset_seconds: float


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The rate-limit headers of a response, or None when they are absent or malformed.

    ``headers`` is looked up case-insensitively when it is an ``httpx.Headers``; a plain dict must
    use lower-case names.
    """
    try:
        remaining = headers.get("x-ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return None
        used = headers.get("x-ratelimit-used")
        parsed = RateLimitHeaders(
            used=int(float(used)) if used is not None else 0,
            remaining=float(remaining),
            reset_seconds=max(0.0, float(reset)),
        )
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(parsed.remaining) and math.isfinite(parsed.reset_seconds)):
        return None
    return parsed


class RateLimiter:
    """Spaces the requests of one OAuth client across Reddit's window.

    One limiter serves every account of one OAuth client (Reddit counts per client id), so a
    :class:`~thotto.reddit.client.RedditClient` owns one and shares it with all its accounts.
    ``burst`` lets that many requests through back to back after an idle spell (1: strict
    spacing). Slots are handed out in call order; a waiter that is cancelled simply leaves its
    slot unused, which only makes the limiter more conservative. Holds no resources.
    """

    def __init__(
        self,
        requests_per_minute: float = 100.0,
        *,
        burst: int = 1,
        clock: Callable[[], float] = trio.current_time,
    ):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.requests_per_minute = requests_per_minute
        self.burst = burst
        self._clock = clock
        self._base_interval = 60.0 / requests_per_minute
        self._server_interval = 0.0
        # GCRA: the theoretical arrival time of the next request, and a hard pause after the
        # server said the budget is spent.
        self._tat = -math.inf
        self._paused_until = -math.inf
        self.last: RateLimitHeaders | None = None
        """The latest headers seen, for metrics and logs."""

    @property
    def interval(self) -> float:
        """Seconds between request slots at the moment."""
        return max(self._base_interval, self._server_interval)

    def next_slot(self) -> float:
        """The Trio time at which a request asked for now could start (no reservation)."""
        now = self._clock()
        tolerance = (self.burst - 1) * self.interval
        return max(now, self._tat - tolerance, self._paused_until)

    def delay(self) -> float:
        """Seconds a request asked for now would wait."""
        return self.next_slot() - self._clock()

    def reserve(self) -> float:
        """Reserve the next slot and return its Trio time; :meth:`acquire` sleeps until it."""
        start = self.next_slot()
        self._tat = max(self._tat, start) + self.interval
        return start

    async def acquire(self) -> None:
        """Wait for this request's slot. Cancellation while waiting is safe."""
        await trio.sleep_until(self.reserve())

    def update(self, headers: RateLimitHeaders | None) -> None:
        """Take the server's view into account after a response.

        With requests remaining the spacing becomes at least ``reset / remaining``; with none
        left every request waits for the window to reset. Responses without headers change
        nothing.
        """
        if headers is None:
            return
        self.last = headers
        now = self._clock()
        if headers.remaining < 1:
            self._paused_until = max(self._paused_until, now + headers.reset_seconds)
            self._server_interval = 0.0
        else:
            self._server_interval = headers.reset_seconds / headers.remaining

    def pause_for(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (after a 429 or an exhausted budget)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
