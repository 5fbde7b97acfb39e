"""kill -9 after Reddit accepted a post and before Thotto recorded it: published exactly once.

The publisher runs as a real OS process on a shared Postgres database; the sandbox (in this test
process) holds its reply after recording the post, and the publisher is killed in that window.
A new publisher process must find the post on Reddit and record it rather than post again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import trio

from tests.support.publisher_process import settings_for
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewPost, NewUser, PostContent, PostStatus, Tier
from thotto.usecases.accounts import link_with_password
from thotto.app import open_app

ROOT = Path(__file__).resolve().parents[2]


def start_publisher(dsn: str, data_dir: Path, reddit_url: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.publisher_process", "--dsn", dsn,
         "--data-dir", str(data_dir), "--reddit-url", reddit_url],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


async def test_kill_9_between_submit_and_record_publishes_exactly_once(sandbox, postgres_dsn, tmp_path):
    settings = settings_for(postgres_dsn, str(tmp_path), sandbox.url)
    async with open_app(settings, run_workers=False) as app:
        user = await app.store.create_user(NewUser(name="creator", tier=Tier.PRO))
        account = await link_with_password(app.scheduler, user.id, "creator_acct", "pw")
        (post,) = await app.scheduler.schedule_posts([NewPost(
            user_id=user.id, account_id=account.id,
            content=PostContent(subreddit="test", title="Exactly once", text="hi"),
            scheduled_for=utcnow() + timedelta(seconds=1))])
    await sandbox.faults(hold_after_accept=60)
    first = start_publisher(postgres_dsn, tmp_path, sandbox.url)
    try:
        with trio.fail_after(20):
            while not await sandbox.posts():  # Reddit has the post; the reply is being held
                await trio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    await sandbox.faults()
    second = start_publisher(postgres_dsn, tmp_path, sandbox.url)
    try:
        async with open_app(settings, run_workers=False) as app:
            with trio.fail_after(30):
                while (published := await app.store.get_post(post.id)).status is not PostStatus.PUBLISHED:
                    await trio.sleep(0.1)
            attempts = await app.engine.attempts(post.job_id)
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=30)
    (record,) = await sandbox.posts()
    assert published.reddit_id == record["id"]
    assert published.reddit_url.endswith(record["permalink"])
    assert attempts[0].outcome.value == "expired"  # the killed attempt
