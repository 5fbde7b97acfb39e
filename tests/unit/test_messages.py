"""Record and message types: one tagged union, constraints on the types, clear errors."""

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from thotto.engine.errors import ValidationError
from thotto.engine.jobs import (
    Completed,
    JobState,
    NewJob,
    Retry,
    as_utc,
    decode_json,
    validated,
    validated_jobs,
)
from thotto.scheduler.records import AnyMessage, PostContent, PostStatus, POST_STATUS_OF_JOB_STATE

UTC = timezone.utc


@pytest.mark.parametrize(
    "message",
    [
        NewJob(kind="reddit.submit", payload=b'{"post_id": 1}', run_at=datetime(2026, 1, 1, tzinfo=UTC)),
        Completed(job_id=1, attempt=2),
        Retry(job_id=1, attempt=1, run_at=datetime(2026, 1, 1, 9, tzinfo=UTC), error="HTTP 503"),
        PostContent(subreddit="python", title="Hello"),
    ],
)
def test_every_type_round_trips_through_the_tagged_union(message):
    for codec in (msgspec.json, msgspec.msgpack):
        decoded = codec.decode(codec.encode(message), type=AnyMessage)
        assert decoded == message


def test_tag_is_the_class_name():
    assert msgspec.json.encode(Completed(1, 1)) == b'{"type":"Completed","job_id":1,"attempt":1}'


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (NewJob(kind=""), "kind"),
        (NewJob(kind="x", queue="has space"), "queue"),
        (NewJob(kind="x", max_attempts=0), "max_attempts"),
        (NewJob(kind="x", priority=5000), "priority"),
        (NewJob(kind="x", run_at=datetime(2026, 1, 1)), "run_at"),
    ],
)
def test_validated_rejects_bad_fields_and_names_them(job, field):
    with pytest.raises(ValidationError) as caught:
        validated(job)
    assert caught.value.field == field


def test_validated_returns_a_good_struct_unchanged():
    job = NewJob(kind="reddit.submit", run_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert validated(job) == job


def test_post_title_and_flair_limits():
    validated(PostContent(subreddit="python", title="x" * 300, flair_text="f" * 64, flair_id="i" * 36))
    for bad in (
        PostContent(subreddit="python", title=""),
        PostContent(subreddit="python", title="x" * 301),
        PostContent(subreddit="python", title="t", flair_text="f" * 65),
        PostContent(subreddit="r/python", title="t"),
    ):
        with pytest.raises(ValidationError):
            validated(bad)


def test_decode_json_reports_malformed_json_and_unknown_shapes():
    with pytest.raises(ValidationError, match="Malformed JSON"):
        decode_json(b"{", NewJob)
    with pytest.raises(ValidationError) as caught:
        decode_json(b'{"type": "NewJob", "kind": "x", "max_attempts": "3"}', NewJob)
    assert caught.value.field == "max_attempts"


def test_as_utc_converts_offsets_and_refuses_naive():
    paris = timezone(timedelta(hours=1))
    assert as_utc(datetime(2026, 1, 1, 10, tzinfo=paris)) == datetime(2026, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(ValidationError, match="no time zone"):
        as_utc(datetime(2026, 1, 1))


def test_every_job_state_maps_to_a_post_status():
    assert set(POST_STATUS_OF_JOB_STATE) == set(JobState)
    assert set(POST_STATUS_OF_JOB_STATE.values()) == set(PostStatus)


def test_validated_jobs_checks_every_job_of_a_batch():
    good = NewJob(kind="noop", run_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert validated_jobs([good, good]) == [good, good]
    naive = NewJob(kind="noop", run_at=datetime(2026, 1, 1))
    with pytest.raises(ValidationError) as caught:
        validated_jobs([good, good, naive])
    assert caught.value.field == "run_at"
    with pytest.raises(ValidationError):
        validated_jobs([good, NewJob(kind="noop", payload="not bytes")])
