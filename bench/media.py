"""Uploading images to the media library (issue #15).

* ``media.upload_5mb.mbps`` (MB/s): ``POST /api/media`` of a 5 MB PNG (noise, so it does not
  compress), median of several, each checked, stripped and stored in chunks as a user's would be.
* ``media.upload_20mb_x10.rss_growth`` (MB): how much the server's resident memory grows while 10
  uploads of a 19.5 MB PNG run at once, sampled every 20 ms, once what it keeps by design is full
  (a few uploads first fill the SQLite writer's 64 MiB page cache); judged as a ratio to the bytes
  in flight (``media.upload_20mb_x10.bytes``, MB): a server that held whole files would grow by
  about all of them, one that streams by a few chunks each (target ≤ 0.25 of them).

The server is the API bench's (``python -m bench.api``: Thotto on SQLite with its API, in its own
process); the client is httpx in the bench process, sending each body as it is produced.

Why: creators upload phone photos and GIFs of tens of MB; the API must not need memory for each.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile

import httpx
import trio

from bench.api import _first_line
from bench.common import Result, Stopwatch, median_of, progress, report, stop_processes

TARGETS = {
    "media.upload_20mb_x10.rss_growth": ("<=", 0.25, "media.upload_20mb_x10.bytes"),
}
STORES = (None,)  # the server runs on SQLite
MB = 1_000_000
CONCURRENT = 10


def noise_png(side: int) -> bytes:
    """A PNG of random pixels (incompressible): about 3 × side² bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


async def run(kind: str | None, quick: bool, postgres_dsn: str | None) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="thotto-media-") as tmp:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.api", "--data-dir", tmp], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        try:
            with trio.fail_after(60):
                server = json.loads(await _first_line(process))
            url = f"http://{server['host']}:{server['port']}"
            return await measure(url, server["token"], process.pid, quick)
        finally:
            await stop_processes([process])


async def measure(url: str, token: str, pid: int, quick: bool) -> list[Result]:
    headers = {"authorization": f"Bearer {token}", "content-type": "image/png"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        five = noise_png(1290)  # about 5 MB
        runs = []
        progress(f"  media: {len(five) / MB:.1f} MB PNG uploads")
        for _ in range(3 if quick else 7):
            with Stopwatch() as clock:
                await _upload(client, five)
            runs.append(len(five) / MB / clock.seconds)
        results = [report(Result("media.upload_5mb.mbps", median_of(runs), "MB/s", None,
                                 {"bytes": len(five), "uploads": len(runs)}))]
        side = 1000 if quick else 2550  # about 3 MB quick, 19.5 MB full
        big = noise_png(side)
        # Fill what the server keeps by design first: the SQLite writer's page cache (64 MiB)
        # takes the chunks written, and is full long before a day's uploads are done.
        for _ in range(2 if quick else 4):
            await _upload(client, big)
        progress(f"  media: {CONCURRENT} uploads of {len(big) / MB:.1f} MB at once")
        growth = await _rss_growth_during(pid, lambda: _uploads_at_once(client, big))
        params = {"uploads": CONCURRENT, "bytes_each": len(big)}
        results.append(report(Result("media.upload_20mb_x10.bytes", CONCURRENT * len(big) / MB, "MB", None, params)))
        results.append(report(Result("media.upload_20mb_x10.rss_growth", growth / MB, "MB", None, params)))
    return results


async def _upload(client: httpx.AsyncClient, image: bytes) -> None:
    async def body():
        for start in range(0, len(image), 256 * 1024):  # as a client streams a file
            yield image[start:start + 256 * 1024]

    response = await client.post("/api/media", content=body(), headers={"content-length": str(len(image))})
    if response.status_code != 201:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text[:200]}")


async def _uploads_at_once(client: httpx.AsyncClient, image: bytes) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENT):
            nursery.start_soon(_upload, client, image)


async def _rss_growth_during(pid: int, work) -> int:
    """The server's peak resident memory during ``work()`` minus its resident memory before."""
    before = _rss(pid)
    peak = before
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss(pid))
                await trio.sleep(0.02)

        nursery.start_soon(sample)
        try:
            await work()
        finally:
            done.set()
    return max(0, peak - before)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
