"""``thotto jobs`` and ``thotto queue`` as an operator runs them (real processes on a real SQLite
file): tables by default, --json for scripts, one clear line and exit 2 for a mistake."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.api.test_cli import run
from thotto.engine.jobs import Dead, FailureCause, JobState, NewJob, utcnow
from thotto.store import open_store


async def test_operators_search_show_redrive_cancel_pause_and_resume_from_the_cli(tmp_path):
    assert (await run("init", cwd=tmp_path)).returncode == 0
    database = str(tmp_path / "thotto-data" / "thotto.db")
    async with open_store(database) as store:
        waiting = (await store.enqueue(NewJob(kind="mail.send", queue="mail",
                                              run_at=utcnow() + timedelta(days=1)))).job_id
        dead = []
        for cause in (FailureCause.SYSTEM, FailureCause.REFUSED):
            job_id = (await store.enqueue(NewJob(kind="mail.send", queue="mail"))).job_id
            (job,) = await store.claim("cli-test", 1, 60, queues=["mail"])
            await store.settle("cli-test", [Dead(job.id, job.attempt, f"{cause.value} failure", cause)])
            dead.append(job_id)

    paused = json.loads((await run("queue", "pause", "mail", "--json", cwd=tmp_path)).stdout)
    assert (paused["queue"], paused["paused"]) == ("mail", True)
    queues = json.loads((await run("queue", "list", "--json", cwd=tmp_path)).stdout)["queues"]
    assert [q["paused"] for q in queues if q["queue"] == "mail"] == [True]

    found = json.loads((await run("jobs", "list", "--queue", "mail", "--state", "dead", "--json",
                                  cwd=tmp_path)).stdout)
    assert [job["id"] for job in found["jobs"]] == dead[::-1]
    assert [job["failureCause"] for job in found["jobs"]] == ["refused", "system"]
    table = (await run("jobs", "list", "--queue", "mail", cwd=tmp_path)).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "QUEUE", "KIND", "STATE"] and len(table) == 4
    shown = (await run("jobs", "show", str(dead[0]), cwd=tmp_path)).stdout
    assert "system failure" in shown and "retry       yes (retry)" in shown

    mistake = await run("jobs", "redrive", cwd=tmp_path)
    assert mistake.returncode == 2 and "--all" in mistake.stderr and "Traceback" not in mistake.stderr
    redriven = json.loads((await run("jobs", "redrive", "--all", "--queue", "mail", "--json",
                                     cwd=tmp_path)).stdout)
    assert sorted(redriven["redriven"]) == sorted(dead) and redriven["skipped"] == []
    cancelled = json.loads((await run("jobs", "cancel", str(waiting), "--json", cwd=tmp_path)).stdout)
    assert cancelled["state"] == "cancelled"
    refused = await run("jobs", "retry", str(waiting), cwd=tmp_path)
    assert refused.returncode == 2 and "cancelled" in refused.stderr
    resumed = json.loads((await run("queue", "resume", "mail", "--json", cwd=tmp_path)).stdout)
    assert resumed["paused"] is False

    async with open_store(database) as store:
        assert await store.paused_queues() == []
        assert {(await store.get_job(job_id)).state for job_id in dead} == {JobState.PENDING}
