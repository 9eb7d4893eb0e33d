"""resolvers.output on its own: how output becomes events (at once when idle, coalesced
while an emit is in flight or within the window, by size and stream; UTF-8 split across
reads), and the recorded-output cap in front of an emitter
(real test database for the shared quota)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from starlette.applications import Starlette

from resolvers.event_kinds import OutputTruncated
from resolvers.events import EventLog
from resolvers.output import OutputCoalescer, capped_emit
from resolvers.storage import StorageLimits
from tests.conftest import Account
from tests.support import wait_until


class Emitted:
    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    async def __call__(self, stream: str, text: str) -> None:
        if self.fail:
            raise RuntimeError("the log is gone")
        self.calls.append((stream, text))


async def test_a_write_alone_is_emitted_at_once() -> None:
    emitted = Emitted()
    coalescer = OutputCoalescer(emitted, max_bytes=1024, max_delay_s=60)
    await coalescer.feed("stdout", b"a line alone\n")
    # Emitted by a task of its own (the reader is not held up), with no window to wait
    # for: a 60 s window would outlast wait_until.
    await wait_until(lambda: emitted.calls == [("stdout", "a line alone\n")])
    await coalescer.close()


async def test_writes_soon_after_an_emit_wait_for_the_window() -> None:
    emitted = Emitted()
    coalescer = OutputCoalescer(emitted, max_bytes=1024, max_delay_s=0.05)
    await coalescer.feed("stdout", b"a")
    await wait_until(lambda: emitted.calls == [("stdout", "a")])
    for part in (b"b", b"c"):
        await coalescer.feed("stdout", part)
    await asyncio.sleep(0)
    assert emitted.calls == [("stdout", "a")], "b and c: within the window of a's emit"
    await wait_until(lambda: emitted.calls == [("stdout", "a"), ("stdout", "bc")])
    await coalescer.close()
    assert emitted.calls == [("stdout", "a"), ("stdout", "bc")]


class Blocking(Emitted):
    """An emitter whose first call waits until ``release`` is set (a commit in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, stream: str, text: str) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        await super().__call__(stream, text)


async def test_writes_during_an_emit_go_together_in_the_next() -> None:
    emitted = Blocking()
    coalescer = OutputCoalescer(emitted, max_bytes=1024, max_delay_s=0)
    await coalescer.feed("stdout", b"first ")  # never waits for the emit
    await emitted.entered.wait()
    for part in (b"x", b"y", b"z"):
        await coalescer.feed("stdout", part)
    assert emitted.calls == []
    emitted.release.set()
    await wait_until(lambda: len(emitted.calls) == 2)
    assert emitted.calls == [("stdout", "first "), ("stdout", "xyz")]
    await coalescer.close()
    assert len(emitted.calls) == 2


async def test_a_full_buffer_is_emitted_at_once() -> None:
    emitted = Emitted()
    coalescer = OutputCoalescer(emitted, max_bytes=4, max_delay_s=60)
    await coalescer.feed("stdout", b"a")  # alone: at once, and opens the window
    await wait_until(lambda: emitted.calls == [("stdout", "a")])
    await coalescer.feed("stdout", b"b")
    assert emitted.calls == [("stdout", "a")]
    await coalescer.feed("stdout", b"cdef")
    assert emitted.calls == [("stdout", "a"), ("stdout", "bcdef")], "no timer needed"
    await coalescer.close()


async def test_switching_streams_flushes_the_other_first_in_order() -> None:
    emitted = Emitted()
    coalescer = OutputCoalescer(emitted, max_delay_s=60)
    await coalescer.feed("stdout", b"out1 ")
    await coalescer.feed("stderr", b"err ")
    await coalescer.feed("stdout", b"out2")
    await coalescer.close()
    assert emitted.calls == [("stdout", "out1 "), ("stderr", "err "), ("stdout", "out2")]


async def test_a_character_split_across_reads_is_never_mangled() -> None:
    emitted = Emitted()
    coalescer = OutputCoalescer(emitted, max_bytes=1, max_delay_s=60)
    snowman = "☃".encode()  # three bytes
    for i in range(3):
        await coalescer.feed("stdout", snowman[i : i + 1])
    assert emitted.calls == [("stdout", "☃")]
    await coalescer.feed("stdout", b"\xe2\x98")  # a truncated character at the end
    await coalescer.close()
    assert emitted.calls == [("stdout", "☃"), ("stdout", "\ufffd")]


async def test_a_failing_emit_from_the_timer_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    emitted = Emitted(fail=True)
    coalescer = OutputCoalescer(emitted, max_delay_s=0.01)
    await coalescer.feed("stdout", b"x")
    await wait_until(lambda: "emitting coalesced output failed" in caplog.text)
    await coalescer.close()  # nothing left: close does not raise


async def test_the_output_cap_cuts_once_and_says_so(app: Starlette, account: Account) -> None:
    sid = uuid.UUID(account["sessionId"])
    log = EventLog(app.state.services.bus, limits=StorageLimits(output_cap_bytes=10))
    start = await log.last_seq(sid)
    emitted = Emitted()
    emit = capped_emit(log, sid, emitted, command_id="cmd-1")
    await emit("stdout", "héllo!")  # 7 bytes
    await emit("stdout", "wröld")  # 3 bytes fit: "wr" and half of "ö", which is dropped
    await emit("stdout", "more")
    assert emitted.calls == [("stdout", "héllo!"), ("stdout", "wr")]
    recorded = await log.read(sid, after_seq=start, limit=10)
    assert [r.payload for r in recorded] == [OutputTruncated(10, command_id="cmd-1")]


async def test_no_cap_passes_everything(app: Starlette, account: Account) -> None:
    sid = uuid.UUID(account["sessionId"])
    log = EventLog(app.state.services.bus, limits=StorageLimits(output_cap_bytes=0))
    emitted = Emitted()
    emit = capped_emit(log, sid, emitted, terminal_id="t-1")
    await asyncio.gather(*(emit("stdout", "x" * 1000) for _ in range(5)))
    assert sum(len(text) for _, text in emitted.calls) == 5000
