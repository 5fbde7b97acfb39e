"""Thotto's Reddit layer: the OAuth client (:mod:`thotto.reddit.client`), its rate limiter
(:mod:`thotto.reddit.ratelimit`) and the Reddit-compatible sandbox (:mod:`thotto.reddit.sandbox`,
imported on demand: it pulls in Starlette and Hypercorn)."""

from thotto.reddit.client import (
    DEFAULT_API_URL,
    DEFAULT_SCOPES,
    DEFAULT_TOKEN_URL,
    ImageUpload,
    LinkFlair,
    Me,
    PostRequirements,
    RedditAccount,
    RedditClient,
    RedditConfig,
    Submission,
    SubmitResult,
    SubredditAbout,
    TokenGrant,
    parse_wait,
    user_agent,
)
from thotto.reddit.ratelimit import RateLimitHeaders, RateLimiter, parse_rate_limit_headers

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_SCOPES",
    "DEFAULT_TOKEN_URL",
    "ImageUpload",
    "LinkFlair",
    "Me",
    "PostRequirements",
    "RateLimitHeaders",
    "RateLimiter",
    "RedditAccount",
    "RedditClient",
    "RedditConfig",
    "Submission",
    "SubmitResult",
    "SubredditAbout",
    "TokenGrant",
    "parse_rate_limit_headers",
    "parse_wait",
    "user_agent",
]
