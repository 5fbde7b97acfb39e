"""Community rules: read from the sandbox's seeded subreddits, checked against posts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from thotto.scheduler.community import fetch_rules, rule_problems
from thotto.scheduler.records import MediaRef, PostContent, PostKind, SubredditRules

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def now() -> datetime:
    return NOW


def self_post(subreddit: str, **fields) -> PostContent:
    return PostContent(subreddit=subreddit, title=fields.pop("title", "Hello there"), **fields)


async def test_rules_of_an_open_subreddit_allow_an_ordinary_post(alice):
    rules = await fetch_rules(alice, "test", now)
    assert (rules.name, rules.subreddit_type, rules.subscribers) == ("test", "public", 12000)
    assert rules.allows_self and rules.allows_link and rules.allows_image
    assert rules.flair_ids and rules.synced_at == NOW
    assert rule_problems(self_post("test", text="hi"), rules) == []


@pytest.mark.parametrize(
    ("subreddit", "content", "field", "message"),
    [
        ("self_only", dict(kind=PostKind.LINK, url="https://example.com"), "kind",
         "r/self_only does not allow link posts; it takes text posts"),
        ("links_only", dict(), "kind",
         "r/links_only does not allow text posts; it takes link, image and gallery posts"),
        ("no_images", dict(kind=PostKind.IMAGE, media=[MediaRef(media_id=1)]), "kind",
         "r/no_images does not allow image posts; it takes text and link posts"),
        ("no_images", dict(kind=PostKind.GALLERY, media=[MediaRef(media_id=1), MediaRef(media_id=2)]), "kind",
         "r/no_images does not allow gallery posts; it takes text and link posts"),
        ("flair_required", dict(text="x"), "flair_id", "r/flair_required requires a flair: pick one of"),
        ("private_sub", dict(text="x"), "subreddit", "r/private_sub is private"),
        ("banned_sub", dict(text="x"), "subreddit", "r/banned_sub is banned"),
        ("no_such_place", dict(text="x"), "subreddit", "r/no_such_place does not exist"),
    ],
)
async def test_each_known_rule_is_reported_with_its_field(alice, subreddit, content, field, message):
    rules = await fetch_rules(alice, subreddit, now)
    problems = rule_problems(self_post(subreddit, **content), rules)
    assert [f for f, _ in problems] == [field]
    assert problems[0][1].startswith(message)


async def test_a_flair_that_is_not_the_subreddits_is_refused(alice):
    rules = await fetch_rules(alice, "flair_required", now)
    good = rules.flair_ids[0]
    assert rule_problems(self_post("flair_required", flair_id=good), rules) == []
    (problem,) = rule_problems(self_post("flair_required", flair_id="nope"), rules)
    assert problem[0] == "flair_id" and "'nope' is not one of" in problem[1]


def rules(**fields) -> SubredditRules:
    return SubredditRules(name="strict", display_name="Strict", synced_at=NOW, **fields)


def test_title_rules():
    strict = rules(title_min_length=10, title_max_length=20, title_required_strings=["[OC]"],
                   title_blacklisted_strings=["upvote"])
    assert rule_problems(self_post("Strict", title="[OC] my garden"), strict) == []
    problems = rule_problems(self_post("Strict", title="upvote pls!! " * 2), strict)
    assert [message for _, message in problems] == [
        "r/Strict takes titles of at most 20 characters",
        "r/Strict requires the title to contain '[OC]'",
        "r/Strict does not allow 'upvote' in titles",
    ]


def test_body_and_link_rules():
    body_required = rules(body_policy="required")
    assert rule_problems(self_post("Strict", text="  "), body_required) == [
        ("text", "r/Strict requires text in the post body")]
    no_body = rules(body_policy="notAllowed")
    assert rule_problems(self_post("Strict", text="words"), no_body) == [
        ("text", "r/Strict does not allow text in the post body")]
    only_youtube = rules(domain_whitelist=["youtube.com"])
    link = lambda url: self_post("Strict", kind=PostKind.LINK, url=url)  # noqa: E731
    assert rule_problems(link("https://www.youtube.com/watch?v=1"), only_youtube) == []
    assert rule_problems(link("https://m.youtube.com/x"), only_youtube) == []
    assert rule_problems(link("https://example.com/x"), only_youtube) == [
        ("url", "r/Strict only takes links to youtube.com")]
    assert rule_problems(link("https://spam.example/x"), rules(domain_blacklist=["spam.example"])) == [
        ("url", "r/Strict does not take links to spam.example")]
