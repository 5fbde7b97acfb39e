"""The Reddit product's errors, on the engine's hierarchy (:mod:`thotto.engine.errors`).

Messages say what was wrong and how to fix it; thotto/api/app.py maps each family to an HTTP
status.
"""

from __future__ import annotations

from datetime import datetime

from thotto.engine.errors import (
    Conflict,
    DeferJob,
    InvalidTransition,
    PermanentJobError,
    RetryableJobError,
    ThottoError,
    ValidationError,
)


# --- changes while a post's outcome is unknown --------------------------------------------------


class OutcomePending(InvalidTransition):
    """A post cannot change while an attempt to publish it may have reached Reddit and its
    outcome is not known yet (see thotto.store.lifecycle). ``retry_after_seconds`` is when the
    check is expected to have ended; the API sends it as Retry-After with its 409."""

    def __init__(self, message: str, *, post_id: int, retry_after_seconds: float):
        super().__init__(message, state="publishing")
        self.post_id = post_id
        self.retry_after_seconds = retry_after_seconds



# --- Reddit ----------------------------------------------------------------------------------
# Raised by thotto.reddit.client. Each carries Reddit's error type (``SUBREDDIT_NOEXIST``,
# ``RATELIMIT``, ``HTTP_503``...), Reddit's human message (shown to the user), the form field
# Reddit blamed when it said one, and the HTTP status. Each is also one of the engine's job
# outcomes, so a handler may let them propagate.


class RedditErrorInfo:
    """What Reddit said; mixed into every Reddit error."""

    error_type: str
    message: str
    field: str | None
    status: int | None

    def _set_info(self, error_type: str, message: str, field: str | None, status: int | None):
        self.error_type = error_type
        self.message = message
        self.field = field
        self.status = status


class RedditRetryable(RetryableJobError, RedditErrorInfo):
    """A passing failure: 5xx, 408, a timeout, a refused or reset connection. Retry with backoff."""

    def __init__(self, reason: str, *, error_type: str, message: str = "", field: str | None = None,
                 status: int | None = None, after_seconds: float | None = None):
        super().__init__(reason, after_seconds=after_seconds)
        self._set_info(error_type, message or reason, field, status)


class RedditOutcomeUnknown(RedditRetryable):
    """A submission may or may not have been accepted (timeout or dropped connection after the
    request was sent, a 5xx, a failed look-up of an accepted image post). Before submitting again, look for
    the post in the account's submissions (``RedditAccount.find_submission``)."""


class RedditRateLimited(DeferJob, RedditErrorInfo):
    """Reddit said to slow down (HTTP 429 or a ``RATELIMIT`` error): run the job again at
    ``until`` (``wait_seconds`` from now) without spending an attempt."""

    def __init__(self, reason: str, *, until: datetime, wait_seconds: float, error_type: str,
                 message: str = "", field: str | None = None, status: int | None = None):
        super().__init__(reason, until=until)
        self.wait_seconds = wait_seconds
        self._set_info(error_type, message or reason, field, status)


class RedditMediaPending(DeferJob, RedditErrorInfo):
    """Reddit accepted a media post and has not finished processing it: the post will appear,
    or never will if processing fails. Not an outage (no breaker counts it) and not this
    attempt's failure: run the job again at ``until`` and look for the post before submitting
    anything again."""

    def __init__(self, reason: str, *, until: datetime, error_type: str, message: str = "",
                 field: str | None = None, status: int | None = None):
        super().__init__(reason, until=until)
        self._set_info(error_type, message or reason, field, status)


class RedditPermanent(PermanentJobError, RedditErrorInfo):
    """The request can never succeed as it is: private or banned subreddit (403/404),
    ``SUBREDDIT_NOEXIST``, ``NO_SELFS``, ``NO_LINKS``, an invalid flair (400), ``ALREADY_SUB``,
    or a post that fails validation before it is sent."""

    def __init__(self, reason: str, *, error_type: str, message: str = "", field: str | None = None,
                 status: int | None = None):
        super().__init__(reason)
        self._set_info(error_type, message or reason, field, status)


class RedditAuthError(PermanentJobError, RedditErrorInfo):
    """Reddit refused the account's credentials even after one token refresh (revoked or
    expired refresh token, changed password, missing scope): the account must be linked again.

    Except with ``error_type == "invalid_client"``: then Reddit refused the *app's* credentials
    (the reddit_client_id / reddit_client_secret settings), and no account is at fault."""

    def __init__(self, reason: str, *, error_type: str, message: str = "", field: str | None = None,
                 status: int | None = None):
        super().__init__(reason, cause="system" if error_type == "invalid_client" else "account")
        self._set_info(error_type, message or reason, field, status)


# --- circuit breakers --------------------------------------------------------------------------


class BreakerOpen(DeferJob):
    """A circuit breaker refused the call: its dependency has been failing, so it was not tried.

    ``until`` is when the breaker half-opens (lets a probe call through). A job handler that lets
    this propagate is deferred until then without spending an attempt. ``breaker`` names the
    breaker (``"reddit.account.alice"``, ``"redis"``); ``retry_after`` is ``until`` in seconds
    from now.
    """

    def __init__(self, reason: str, *, until: datetime, breaker: str, retry_after: float):
        super().__init__(reason, until=until)
        self.breaker = breaker
        self.retry_after = retry_after


# --- scheduling ------------------------------------------------------------------------------


class RuleViolation(ValidationError):
    """A post breaks a known rule of its subreddit; ``problems`` lists (field, message) pairs."""

    def __init__(self, subreddit: str, problems: list[tuple[str, str]]):
        super().__init__("; ".join(message for _, message in problems), field=problems[0][0])
        self.subreddit = subreddit
        self.problems = problems


# --- HTTP API ----------------------------------------------------------------------------------


class Unauthorized(ThottoError):
    """No valid API token was presented (``Authorization: Bearer <token>``)."""


class Forbidden(ThottoError):
    """The caller may not do this; ``required_tier`` names the tier that may, when that is why."""

    def __init__(self, message: str, *, required_tier: str | None = None):
        super().__init__(message)
        self.required_tier = required_tier


class TooManyRequests(ThottoError):
    """The caller's request rate is above its limit; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class DuplicatePost(Conflict):
    """The same account already has this title pending or recently published in the subreddit."""

    def __init__(self, message: str, *, existing_post_id: int):
        super().__init__(message)
        self.existing_post_id = existing_post_id


class PayloadTooLarge(ValidationError):
    """A request body is larger than ``api_max_body_bytes`` (or an upload than ``media_max_bytes``)."""


# --- media -------------------------------------------------------------------------------------


class UnsupportedMedia(ValidationError):
    """The upload is not an image of a kind Reddit takes (PNG, JPEG, GIF, WebP), judged by its
    bytes; the message says what is accepted."""


class MediaInUse(Conflict):
    """The image is used by a post that is not finished yet; ``post_ids`` names them."""

    def __init__(self, message: str, *, post_ids: list[int]):
        super().__init__(message)
        self.post_ids = post_ids
