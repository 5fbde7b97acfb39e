"""Mailboxes: call/reply, timeouts, closing, errors from the actor, backpressure."""

from __future__ import annotations

import pytest
import trio

from actors import CallTimeout, Mailbox, MailboxClosed, Reply, Request


async def doubling_actor(mailbox: Mailbox, delay: float = 0) -> None:
    async for request in mailbox:
        await trio.sleep(delay)
        request.reply.set(request.payload * 2)


async def test_call_returns_the_actors_reply():
    mailbox: Mailbox[Request] = Mailbox(8, name="doubler")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(doubling_actor, mailbox)
        assert [await mailbox.call(n) for n in range(3)] == [0, 2, 4]
        mailbox.close()


async def test_call_waits_for_a_slow_reply_within_the_timeout(autojump_clock):
    mailbox: Mailbox[Request] = Mailbox(8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(doubling_actor, mailbox, 3)
        assert await mailbox.call(21, timeout=5) == 42
        assert trio.current_time() == 3
        mailbox.close()


async def test_call_with_builds_a_message_that_carries_its_reply():
    mailbox: Mailbox[tuple[str, Reply]] = Mailbox(8)

    async def actor() -> None:
        async for (text, reply) in mailbox:
            reply.set(text.upper())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor)
        assert await mailbox.call_with(lambda reply: ("hello", reply)) == "HELLO"
        mailbox.close()


async def test_call_without_reply_times_out_at_its_deadline_naming_the_mailbox(autojump_clock):
    mailbox: Mailbox[Request] = Mailbox(8, name="ticker")
    with pytest.raises(CallTimeout, match="call to mailbox 'ticker' got no reply within 2.5s") as caught:
        await mailbox.call("anyone?", timeout=2.5)
    assert caught.value.mailbox == "ticker"
    assert trio.current_time() == 2.5


async def test_call_to_a_full_mailbox_times_out_waiting_for_room(autojump_clock):
    mailbox: Mailbox[str] = Mailbox(1)
    await mailbox.cast("filler")
    with pytest.raises(CallTimeout, match=r"found no room within 1s \(1/1 queued\)"):
        await mailbox.call("no room", timeout=1)
    assert trio.current_time() == 1


async def test_call_to_a_closed_mailbox_raises_mailbox_closed():
    mailbox: Mailbox[Request] = Mailbox(8, name="poster")
    mailbox.close()
    with pytest.raises(MailboxClosed, match="mailbox 'poster' is closed"):
        await mailbox.call("hello")
    with pytest.raises(MailboxClosed):
        await mailbox.cast("hello")
    with pytest.raises(MailboxClosed):
        mailbox.try_cast("hello")


async def test_exception_set_by_the_actor_is_raised_in_the_caller():
    mailbox: Mailbox[Request] = Mailbox(8)

    async def refusing_actor() -> None:
        async for request in mailbox:
            request.reply.fail(KeyError(request.payload))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refusing_actor)
        with pytest.raises(KeyError, match="job-7"):
            await mailbox.call("job-7")
        mailbox.close()


async def test_cast_waits_while_the_mailbox_is_full(autojump_clock):
    mailbox: Mailbox[int] = Mailbox(2)
    await mailbox.cast(1)
    await mailbox.cast(2)
    assert mailbox.queued == 2

    async def receive_later() -> None:
        await trio.sleep(3)
        assert await mailbox.receive() == 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_later)
        await mailbox.cast(3)  # blocks until the receiver makes room
        assert trio.current_time() == 3
    assert mailbox.queued == 2


async def test_try_cast_returns_false_when_full():
    mailbox: Mailbox[int] = Mailbox(1)
    assert mailbox.try_cast(1) is True
    assert mailbox.try_cast(2) is False
    assert await mailbox.receive() == 1


async def test_closing_delivers_queued_messages_then_ends_receiving():
    mailbox: Mailbox[int] = Mailbox(4)
    for n in range(3):
        await mailbox.send(n)
    mailbox.close()
    assert [message async for message in mailbox] == [0, 1, 2]
    with pytest.raises(MailboxClosed):
        await mailbox.receive()


async def test_a_reply_is_answered_once():
    reply: Reply[int] = Reply()
    reply.set(1)
    with pytest.raises(RuntimeError, match="already been answered"):
        reply.fail(ValueError())
    assert await reply.wait() == 1


async def test_cancelled_caller_leaves_the_late_reply_harmless(autojump_clock):
    mailbox: Mailbox[Request] = Mailbox(8)
    with trio.move_on_after(1):
        await mailbox.call("slow", timeout=10)
    request = await mailbox.receive()
    request.reply.set("too late")  # nobody waits any more: no error
    assert request.reply.done
