"""What a composer needs while the creator types: a subreddit's rules and flairs
(``GET /api/subreddits/{name}/rules``) and what scheduling a post would refuse, without
scheduling it (``POST /api/scheduled-posts/check``).

Both answer from the checks scheduling itself makes (:func:`thotto.usecases.posts.problems`,
:func:`thotto.scheduler.community.rule_problems` through it), so the page never holds a second copy of a
rule: it shows what these say.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from thotto.api.endpoints import EndpointGroup, camel, json_response, read_json, read_query
from thotto.api.auth import require_user
from thotto.engine.errors import NotFound
from thotto.errors import ValidationError
from thotto.scheduler.records import (
    FlairView,
    PostCheck,
    PostKind,
    RedditUsername,
    ScheduleRequest,
    Subreddit,
    SubredditRules,
    SubredditRulesView,
    User,
)
from thotto.usecases import posts

ENDPOINTS = EndpointGroup()
TAGS = ("scheduled posts",)


class RulesQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    account: RedditUsername | None = None
    """The linked account to ask Reddit with (its flair choices may differ); default: your first."""


@ENDPOINTS.add("GET", "/api/subreddits/{name}/rules",
               "A subreddit's posting rules, flair choices and community rules, for composing",
               query=RulesQuery, response=SubredditRulesView, errors=(401, 404, 422, 429), tags=TAGS)
async def subreddit_rules(request: Request) -> Response:
    user = await require_user(request)
    query = read_query(request, RulesQuery)
    name = _subreddit_name(request.path_params["name"])
    return json_response(await rules_view(request.app.state.api, user, name, query.account))


def _subreddit_name(value: str) -> str:
    try:
        return msgspec.convert(value, Subreddit)
    except msgspec.ValidationError:
        raise NotFound(f"{value!r} is not a subreddit name (2-21 letters, digits or _)") from None


async def rules_view(context, user: User, subreddit: str, account: str | None) -> SubredditRulesView:
    """The rules scheduling would check ``subreddit``'s posts against, fetched from Reddit with
    one of the user's accounts when Thotto does not know them yet."""
    accounts = await context.store.list_accounts(user.id)
    chosen = [a for a in accounts if account is None or a.reddit_username.lower() == account.lower()]
    if account is not None and not chosen:
        raise ValidationError(f"u/{account} is not linked to your user", field="account")
    if chosen:
        rules = await context.scheduler.posts.rules_for(chosen[0].id, subreddit)
    else:
        rules = await context.store.get_subreddit_rules(subreddit)
    return _view(subreddit, rules)


def _view(subreddit: str, rules: SubredditRules | None) -> SubredditRulesView:
    if rules is None:
        return SubredditRulesView(subreddit=subreddit, known=False)
    kinds = {PostKind.SELF: rules.allows_self, PostKind.LINK: rules.allows_link,
             PostKind.IMAGE: rules.allows_image, PostKind.GALLERY: rules.allows_gallery}
    named = {flair.id: flair for flair in rules.flairs}
    flairs = [FlairView(id=flair_id, text=named[flair_id].text if flair_id in named else flair_id,
                        text_editable=flair_id in named and named[flair_id].text_editable)
              for flair_id in rules.flair_ids]
    return SubredditRulesView(
        subreddit=rules.display_name, known=True, subreddit_type=rules.subreddit_type,
        post_kinds=[kind for kind, allowed in kinds.items() if allowed], over18=rules.over18,
        flair_required=rules.flair_required, flairs=flairs,
        title_min_length=rules.title_min_length, title_max_length=rules.title_max_length,
        title_required_strings=rules.title_required_strings,
        title_blacklisted_strings=rules.title_blacklisted_strings, body_policy=rules.body_policy,
        domain_whitelist=rules.domain_whitelist, domain_blacklist=rules.domain_blacklist,
        community_rules=rules.community_rules, subscribers=rules.subscribers)


@ENDPOINTS.add("POST", "/api/scheduled-posts/check",
               "What scheduling this post would refuse, per subreddit, without scheduling it",
               body=ScheduleRequest, response=PostCheck, errors=(400, 401, 413, 422, 429), tags=TAGS)
async def check_post(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, ScheduleRequest)
    found = await posts.problems(request.app.state.api.scheduler, user, body)
    # Fields are named as the API names them (camelCase), so a page puts each beside its input.
    return json_response(PostCheck(problems=[
        msgspec.structs.replace(problem, field=camel(problem.field)) for problem in found.problems]))
