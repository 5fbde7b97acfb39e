"""Demo mode's sandbox: the same port across restarts (or a free one, said in the log), and a
published post's redditUrl opens a readable page of the post."""

from __future__ import annotations

import logging
import socket

import httpx
import trio

from tests.reddit.test_submit import PNG
from thotto import commands
from thotto.config import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def demo_url(settings: Settings) -> str:
    """Start demo mode's sandbox, note where Reddit is, stop it."""
    async with trio.open_nursery() as nursery:
        demo = await commands._start_demo_sandbox(nursery, settings)
        nursery.cancel_scope.cancel()
    return demo.reddit_url


async def test_the_demo_sandbox_keeps_its_port_across_restarts(tmp_path):
    port = free_port()
    settings = Settings(data_dir=str(tmp_path), demo_sandbox_port=port)
    assert [await demo_url(settings) for _ in range(2)] == [f"http://127.0.0.1:{port}"] * 2


async def test_a_taken_port_falls_back_to_a_free_one_and_says_so(tmp_path, caplog):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="thotto.demo"):
            url = await demo_url(Settings(data_dir=str(tmp_path), demo_sandbox_port=taken))
    assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{taken}")
    (record,) = [r for r in caplog.records if r.name == "thotto.demo"]
    assert f"port {taken} is not free" in record.getMessage()
    assert url.rsplit(":", 1)[1] in record.getMessage()


async def test_a_posts_url_opens_a_readable_page(sandbox, reddit, alice):
    result = await alice.submit("test", "Tom & <Jerry>", text="First paragraph.\n\nSecond <one>.")
    async with httpx.AsyncClient() as browser:
        page = await browser.get(result.url)
        missing = await browser.get(f"{sandbox.url}/r/test/comments/zzzzzz/nothing/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Tom &amp; &lt;Jerry&gt;</h1>" in page.text
    assert "<p>First paragraph.</p><p>Second &lt;one&gt;.</p>" in page.text
    assert "u/alice" in page.text and "r/test" in page.text
    assert missing.status_code == 404 and "no such post" in missing.text


async def test_an_image_posts_url_shows_the_image(sandbox, reddit, alice):
    result = await alice.submit("test", "A cat", image=PNG, image_name="cat.png")
    (post,) = await sandbox.posts()
    async with httpx.AsyncClient() as browser:
        page = await browser.get(result.url)
        image = await browser.get(post["url"])
    assert page.status_code == 200 and f'<img src="{post["url"]}"' in page.text
    assert image.content == PNG


async def test_an_api_client_gets_the_post_as_json_at_its_permalink(sandbox, alice):
    result = await alice.submit("test", "As JSON", text="x")
    token = await alice._access_token()
    async with httpx.AsyncClient() as http:
        answer = await http.get(result.url, headers={"Authorization": f"bearer {token}"})
    listing, comments = answer.json()
    assert listing["data"]["children"][0]["data"]["id"] == result.id
    assert comments["data"]["children"] == []
