"""What a post's status is, and what may change it: the rules both stores apply, written once.

A post is *in doubt* from the moment an attempt may have reached Reddit (the publisher *arms*
it, recording ``armed_at``) until its outcome is known: Reddit's id is recorded (published), or
Reddit answered with a refusal and the publisher disarmed it, or a reconciliation found it is not
on Reddit. While a post is in doubt, changing it would be a lie in one direction or the other: an
edit could be published beside the post already live (two posts), and a cancel would report
"cancelled" for a post that is on Reddit. So the stores refuse both, inside the same transaction
that would change the post, with :class:`OutcomePending`: every client (API, batch, CLI, pages)
gets the same rule and the same message, and none can forget it.

The functions here are pure (no I/O): the stores call them on rows they have read and locked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from thotto.engine.errors import InvalidTransition
from thotto.engine.jobs import JobState
from thotto.errors import OutcomePending
from thotto.scheduler.records import POST_STATUS_OF_JOB_STATE, Post, PostStatus

RECONCILE_SETTLE_SECONDS = 60.0
"""How long after an attempt Reddit's listing of the account's submissions is trusted to show
the post if Reddit accepted it. Before then, a post that is not listed yet may still appear, so
the publisher defers rather than submit again (thotto.scheduler.publishing), and a change waits."""


def post_status(job_state: JobState, armed_at: datetime | None, reddit_id: str | None) -> PostStatus:
    """A post's status from its job's state and its publishing marks.

    Published as soon as Reddit's id is recorded (even before the job's own outcome is settled);
    *publishing* while its job runs and while an earlier attempt's outcome is unknown (armed,
    job waiting for its next run); otherwise what its job's state says.
    """
    if reddit_id is not None:
        return PostStatus.PUBLISHED
    if job_state is JobState.PENDING and armed_at is not None:
        return PostStatus.PUBLISHING
    return POST_STATUS_OF_JOB_STATE[job_state]


# The same rule as post_status, as SQL over ``posts p JOIN jobs j`` (the same text in both
# dialects), for listing posts by status.
STATUS_CONDITION = {
    PostStatus.SCHEDULED: "(j.state = 'pending' AND p.armed_at IS NULL AND p.reddit_id IS NULL)",
    PostStatus.PUBLISHING: "(p.reddit_id IS NULL AND (j.state = 'processing' "
                           "OR (j.state = 'pending' AND p.armed_at IS NOT NULL)))",
    PostStatus.PUBLISHED: "(p.reddit_id IS NOT NULL OR j.state = 'completed')",
    PostStatus.FAILED: "(j.state = 'dead' AND p.reddit_id IS NULL)",
    PostStatus.CANCELLED: "(j.state = 'cancelled' AND p.reddit_id IS NULL)",
}


def post_error(status: PostStatus, last_error: str | None) -> str | None:
    """The error a post shows: its job's last error (the dead-letter reason of a failed post, the
    latest retry reason of one still to publish), none once published or cancelled."""
    if status in (PostStatus.PUBLISHED, PostStatus.CANCELLED):
        return None
    return last_error


def check_changeable(post: Post, action: str, now: datetime) -> None:
    """Raise unless ``post`` may be ``action`` ("edited", "rescheduled", "cancelled") now.

    Only a scheduled post may change. A post that may already be on Reddit raises
    :class:`OutcomePending` (saying when to try again); one that is published, failed or
    cancelled raises :class:`InvalidTransition`.
    """
    if post.status is PostStatus.SCHEDULED:
        return
    if post.status is PostStatus.PUBLISHING:
        raise _outcome_pending(post, action, now)
    raise InvalidTransition(
        f"Post {post.id} is {post.status.value}: only a scheduled post can be {action}",
        job_id=post.job_id, state=post.status.value,
    )


def _outcome_pending(post: Post, action: str, now: datetime) -> OutcomePending:
    subreddit = post.content.subreddit
    if post.armed_at is None:  # its job is running: an attempt is being made right now
        return OutcomePending(
            f"Post {post.id} is being published to r/{subreddit} right now, so it cannot be "
            f"{action}; try again in a few seconds: it will then be published, or scheduled again "
            "if Reddit refused it",
            post_id=post.id, retry_after_seconds=5.0,
        )
    settled = post.armed_at + timedelta(seconds=RECONCILE_SETTLE_SECONDS)
    wait = max((settled - now).total_seconds(), 5.0)
    return OutcomePending(
        f"Post {post.id} may already be on r/{subreddit}: an attempt to publish it at "
        f"{post.armed_at:%H:%M:%S} UTC has not reported its outcome, and Thotto is checking Reddit. "
        f"It cannot be {action} until that check ends; try again in {wait:.0f} s. If the post is "
        "on Reddit it will show as published with its link, and this change will not have applied",
        post_id=post.id, retry_after_seconds=wait,
    )


def check_revivable(post: Post, editing: bool) -> None:
    """Raise unless a failed ``post`` may be scheduled again (see Store.revive_post)."""
    if post.status is not PostStatus.FAILED:
        hint = " (edit a scheduled post with PATCH instead)" if post.status is PostStatus.SCHEDULED else ""
        raise InvalidTransition(
            f"Post {post.id} is {post.status.value}: only a failed post can be rescheduled this "
            f"way{hint}", job_id=post.job_id, state=post.status.value)
    if editing and post.armed_at is not None:
        raise InvalidTransition(
            f"Post {post.id} may be on Reddit already (an attempt to publish it never reported "
            "its outcome), so it cannot be edited: retry it as it is, and Thotto looks for it on "
            "Reddit before posting again", job_id=post.job_id, state=post.status.value)
