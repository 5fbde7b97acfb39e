"""The engine on its own (thotto.engine.open_engine), as an embedder runs it: a store it opens,
its own actors, its own handlers, and nothing of the Reddit product."""

from __future__ import annotations

import trio

import thotto.engine
from thotto.store import open_store


async def test_the_engine_runs_an_embedders_job_with_nothing_of_the_product(tmp_path):
    settings = thotto.engine.EngineSettings(data_dir=str(tmp_path), workers=2, shutdown_grace_seconds=1)
    ran = trio.Event()
    seen: list[dict] = []

    async with open_store(settings.resolved_database_url()) as store:
        async with thotto.engine.open_engine(settings, store) as engine:

            @engine.handler("greet", timeout_seconds=5)
            async def greet(ctx: thotto.engine.JobContext) -> None:
                seen.append(ctx.payload(dict))
                ran.set()

            # Only the engine's own kinds and the embedder's: no Reddit publishing, no webhooks.
            assert engine.registry.kinds() == ["greet", "thotto.cron"]
            assert [child.name for child in engine.tree.supervisor.children()] == ["sweeper", "workers", "ticker"]
            assert [status.name for status in await engine.cron_statuses()] == ["retention"]

            result = await engine.enqueue("greet", {"name": "world"})
            with trio.fail_after(30):
                await ran.wait()
        job = await store.get_job(result.job_id)

    assert seen == [{"name": "world"}]
    assert job.state is thotto.engine.JobState.COMPLETED


async def test_an_engine_of_an_api_process_runs_no_workers(tmp_path):
    settings = thotto.engine.EngineSettings(data_dir=str(tmp_path), role=thotto.engine.ProcessRole.API)
    async with open_store(settings.resolved_database_url()) as store:
        async with thotto.engine.open_engine(settings, store) as engine:
            assert engine.tree.supervisor.children() == []
            job = await engine.enqueue("anything")
            assert (await engine.get(job.job_id)).state is thotto.engine.JobState.PENDING
