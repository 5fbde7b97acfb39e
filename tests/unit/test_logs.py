"""Structured logs: JSON lines carry a job's fields, and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from thotto.logs import REDACTED, JsonLines, RedactSecrets


@pytest.fixture
def output():
    """A logger writing JSON lines through the redaction filter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLines())
    handler.addFilter(RedactSecrets(["s3cr3t-app-secret"]))
    logger = logging.getLogger("thotto.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_job_event_is_one_json_line_with_its_fields(output):
    logger, lines = output
    logger.warning("job %d attempt %d failed", 7, 2, extra={"job_id": 7, "attempt": 2, "account": "alice"})
    (line,) = lines()
    assert line["message"] == "job 7 attempt 2 failed"
    assert (line["job_id"], line["attempt"], line["account"], line["level"]) == (7, 2, "alice", "WARNING")


@pytest.mark.parametrize("message, args", [
    ("token refresh with refresh_token=%s", ("abc.def-123",)),
    ("login %s", ("password=hunter2-long",)),
    ('reply {"access_token": "%s", "expires_in": 3600}', ("tok_ABCDEF",)),
    ("header Authorization: Bearer %s", ("tok_ABCDEF",)),
    ("the client secret is %s", ("s3cr3t-app-secret",)),
])
def test_secrets_in_messages_are_redacted(output, message, args):
    logger, lines = output
    logger.info(message, *args)
    (line,) = lines()
    assert REDACTED in line["message"]
    for secret in ("abc.def-123", "hunter2-long", "tok_ABCDEF", "s3cr3t-app-secret"):
        assert secret not in json.dumps(line)


def test_secret_fields_and_tracebacks_are_redacted(output):
    logger, lines = output
    try:
        raise RuntimeError("token exchange failed: client_secret=s3cr3t-app-secret")
    except RuntimeError:
        logger.exception("linking failed", extra={"refresh_token": "rt-123456", "account": "alice"})
    (line,) = lines()
    assert line["refresh_token"] == REDACTED and line["account"] == "alice"
    assert "RuntimeError" in line["exception"]
    assert "s3cr3t-app-secret" not in json.dumps(line)


def test_ordinary_messages_are_left_alone(output):
    logger, lines = output
    logger.info("published post %d as %s", 3, "https://reddit.example/r/test/comments/abc")
    (line,) = lines()
    assert line["message"] == "published post 3 as https://reddit.example/r/test/comments/abc"
