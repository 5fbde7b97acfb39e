"""Community rules: what each subreddit allows, checked when a post is scheduled.

Rules come from Reddit (``/r/{sr}/about``, ``/api/v1/{sr}/post_requirements``, and the link
flairs the account may pick from ``/r/{sr}/api/flairselector``), are stored per subreddit,
refreshed by the weekly community sync, and fetched on first use. :func:`rule_problems` lists every known rule a post breaks, each
with the field and a message for the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from thotto.engine.errors import JobError
from thotto.errors import RedditAuthError, RedditPermanent
from thotto.scheduler.records import FlairChoice, PostContent, PostKind, SubredditRules
from thotto.reddit.client import RedditAccount

log = logging.getLogger("thotto.community")

CLOSED_TYPES = {
    "private": "is private: only approved members can post",
    "archived": "is archived: it takes no new posts",
    "gold_restricted": "takes posts only from Reddit Premium members",
}

Problem = tuple[str, str]  # (field, message)


async def fetch_rules(reddit: RedditAccount, subreddit: str, now: Callable[[], datetime]) -> SubredditRules:
    """Read a subreddit's rules from Reddit. A subreddit that does not exist, is banned or
    private comes back as rules that allow nothing (``subreddit_type`` says why); any other
    refusal of its about page raises (the rules stay unknown rather than wrongly closed).

    The flairs are the ones this account may pick; when Reddit will not list them, they stay
    unknown (any flair id passes here, Reddit decides) and the other rules still count."""
    try:
        about = await reddit.about(subreddit)
    except RedditAuthError:
        raise
    except RedditPermanent as error:
        kind = _closed(error)
        if kind is None:
            raise
        return SubredditRules(name=subreddit.lower(), display_name=subreddit, subreddit_type=kind,
                              allows_self=False, allows_link=False, allows_image=False,
                              allows_gallery=False, synced_at=now())
    requirements = await reddit.post_requirements(about.display_name)
    flairs = await _flair_choices(reddit, about) if about.link_flair_enabled else []
    return SubredditRules(
        name=about.display_name.lower(),
        display_name=about.display_name,
        subreddit_type=about.subreddit_type,
        allows_self=about.submission_type in ("any", "self"),
        allows_link=about.submission_type in ("any", "link"),
        allows_image=about.submission_type in ("any", "link") and about.allow_images is not False,
        allows_gallery=(about.submission_type in ("any", "link") and about.allow_images is not False
                        and about.allow_galleries is not False),
        over18=about.over18,
        flair_required=requirements.is_flair_required,
        flair_ids=[flair.id for flair in flairs],
        flairs=[FlairChoice(id=flair.id, text=flair.text, text_editable=flair.text_editable)
                for flair in flairs],
        community_rules=await _community_rules(reddit, about.display_name),
        title_min_length=requirements.title_text_min_length,
        title_max_length=requirements.title_text_max_length,
        title_required_strings=requirements.title_required_strings or [],
        title_blacklisted_strings=requirements.title_blacklisted_strings or [],
        body_policy=requirements.body_restriction_policy,
        domain_whitelist=requirements.domain_whitelist or [],
        domain_blacklist=requirements.domain_blacklist or [],
        subscribers=about.subscribers,
        synced_at=now(),
    )


async def _flair_choices(reddit: RedditAccount, about) -> list:
    """The link flairs the account may pick, or none when it may not pick any or Reddit would
    not say (logged: the rules are kept without them)."""
    if about.can_assign_link_flair is False:
        return []
    try:
        return await reddit.link_flairs(about.display_name)
    except RedditAuthError:
        raise
    except JobError as error:
        log.warning("could not read r/%s's link flairs (%s); keeping its other rules",
                    about.display_name, error)
        return []


async def _community_rules(reddit: RedditAccount, subreddit: str) -> list[str]:
    """The community's rules to show while composing, or none when Reddit would not say
    (logged: they are shown, never checked, so the other rules still count)."""
    try:
        return await reddit.community_rules(subreddit)
    except RedditAuthError:
        raise
    except JobError as error:
        log.warning("could not read r/%s's community rules (%s); keeping its other rules",
                    subreddit, error)
        return []


def _closed(error: RedditPermanent) -> str | None:
    """The subreddit_type to record for a subreddit whose about page Reddit refused, or None
    when the refusal does not say the subreddit is closed to everyone."""
    kind = (error.error_type or "").upper()
    if kind == "SUBREDDIT_PRIVATE":
        return "private"
    if "BANNED" in kind:
        return "banned"
    if "NOEXIST" in kind or kind in ("HTTP_404", "HTTP_302", "HTTP_301"):  # reddit.com redirects to search
        return "missing"
    return None


def rule_problems(content: PostContent, rules: SubredditRules) -> list[Problem]:
    """Every known rule of ``rules`` that ``content`` breaks (empty: allowed). A subreddit that
    takes no posts at all is one problem, not one per rule."""
    closed = _access_problems(rules)
    if closed:
        return closed
    return [
        *_kind_problems(content, rules),
        *_flair_problems(content, rules),
        *_title_problems(content.title, rules),
        *_body_problems(content, rules),
        *_link_problems(content, rules),
    ]


def _access_problems(rules: SubredditRules) -> list[Problem]:
    name = f"r/{rules.display_name}"
    if rules.subreddit_type in ("banned", "missing", "closed"):
        reason = {"banned": "is banned", "missing": "does not exist", "closed": "cannot be posted to"}
        return [("subreddit", f"{name} {reason[rules.subreddit_type]}")]
    if rules.subreddit_type in CLOSED_TYPES:
        return [("subreddit", f"{name} {CLOSED_TYPES[rules.subreddit_type]}")]
    return []


def _kind_problems(content: PostContent, rules: SubredditRules) -> list[Problem]:
    allowed = {PostKind.SELF: rules.allows_self, PostKind.LINK: rules.allows_link,
               PostKind.IMAGE: rules.allows_image, PostKind.GALLERY: rules.allows_gallery}
    if allowed[content.kind]:
        return []
    names = {PostKind.SELF: "text", PostKind.LINK: "link", PostKind.IMAGE: "image", PostKind.GALLERY: "gallery"}
    others = [names[kind] for kind, ok in allowed.items() if ok]
    listed = ", ".join(others[:-1]) + f" and {others[-1]}" if len(others) > 1 else "".join(others)
    hint = f"; it takes {listed} posts" if others else ""
    return [("kind", f"r/{rules.display_name} does not allow {names[content.kind]} posts{hint}")]


def _flair_problems(content: PostContent, rules: SubredditRules) -> list[Problem]:
    if content.flair_text and not content.flair_id:
        # Reddit takes a flair only as a template id; text alone is refused (HTTP 400).
        return [("flair_text", "a flair's text needs its flair template id too (Reddit refuses "
                               f"text alone): pick one of r/{rules.display_name}'s editable "
                               "flairs, or leave the text out")]
    if content.flair_id and rules.flair_ids and content.flair_id not in rules.flair_ids:
        return [("flair_id", f"flair {content.flair_id!r} is not one of r/{rules.display_name}'s "
                             f"flairs ({', '.join(rules.flair_ids)})")]
    if rules.flair_required and not content.flair_id:
        # By their names where Thotto knows them: a creator picks "News", not a template id.
        names = [flair.text or flair.id for flair in rules.flairs] or rules.flair_ids
        choices = f": pick one of {', '.join(names)}" if names else ""
        return [("flair_id", f"r/{rules.display_name} requires a flair{choices}")]
    return []


def _title_problems(title: str, rules: SubredditRules) -> list[Problem]:
    problems = []
    name = f"r/{rules.display_name}"
    if rules.title_min_length and len(title) < rules.title_min_length:
        problems.append(("title", f"{name} needs titles of at least {rules.title_min_length} characters"))
    if rules.title_max_length and len(title) > rules.title_max_length:
        problems.append(("title", f"{name} takes titles of at most {rules.title_max_length} characters"))
    lowered = title.lower()
    missing = [s for s in rules.title_required_strings if s.lower() not in lowered]
    if missing:
        problems.append(("title", f"{name} requires the title to contain {', '.join(map(repr, missing))}"))
    banned = [s for s in rules.title_blacklisted_strings if s.lower() in lowered]
    if banned:
        problems.append(("title", f"{name} does not allow {', '.join(map(repr, banned))} in titles"))
    return problems


def _body_problems(content: PostContent, rules: SubredditRules) -> list[Problem]:
    if content.kind is not PostKind.SELF:
        return []
    if rules.body_policy == "required" and not (content.text or "").strip():
        return [("text", f"r/{rules.display_name} requires text in the post body")]
    if rules.body_policy == "notAllowed" and (content.text or "").strip():
        return [("text", f"r/{rules.display_name} does not allow text in the post body")]
    return []


def _link_problems(content: PostContent, rules: SubredditRules) -> list[Problem]:
    if content.kind is not PostKind.LINK or not content.url:
        return []
    domain = (urlsplit(content.url).hostname or "").lower().removeprefix("www.")

    def listed(domains: list[str]) -> bool:
        return any(domain == d.lower() or domain.endswith("." + d.lower()) for d in domains)

    if rules.domain_whitelist and not listed(rules.domain_whitelist):
        return [("url", f"r/{rules.display_name} only takes links to {', '.join(rules.domain_whitelist)}")]
    if rules.domain_blacklist and listed(rules.domain_blacklist):
        return [("url", f"r/{rules.display_name} does not take links to {domain}")]
    return []
