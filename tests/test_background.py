"""The background-run lifecycle (resolvers.background) on its own: the result writer is
always told the end and awaited, a lost race is CONFLICT, and shutdown waits for runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError

from resolvers.background import BackgroundRuns, result_writer
from resolvers.errors import Conflict


def recorder(into: list[int]) -> Any:
    async def write(queue: asyncio.Queue[int | None]) -> None:
        while (item := await queue.get()) is not None:
            into.append(item)

    return write


async def test_the_writer_is_awaited_when_the_run_fails() -> None:
    """The bug this helper fixes: an exception in the run left the writer on its queue."""
    written: list[int] = []

    async def failing_run() -> None:
        async with result_writer(recorder(written)) as queue:
            queue.put_nowait(1)
            queue.put_nowait(2)
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await failing_run()
    assert written == [1, 2], "what was queued before the failure is recorded"
    leftover = [t for t in asyncio.all_tasks() if "recorder" in repr(t.get_coro())]
    assert leftover == []


async def test_the_writer_is_awaited_when_the_run_succeeds() -> None:
    written: list[int] = []
    async with result_writer(recorder(written)) as queue:
        for i in range(5):
            queue.put_nowait(i)
    assert written == [0, 1, 2, 3, 4]


async def test_a_cancelled_run_cancels_its_writer() -> None:
    started = asyncio.Event()
    writer_cancelled = asyncio.Event()

    async def write(queue: asyncio.Queue[int | None]) -> None:
        try:
            await asyncio.Event().wait()  # a writer stuck on the database
        except asyncio.CancelledError:
            writer_cancelled.set()
            raise

    async def run() -> None:
        async with result_writer(write):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer_cancelled.is_set()


async def test_the_unique_key_race_is_a_conflict() -> None:
    class Taken:
        @staticmethod
        async def create(**_fields: Any) -> Any:
            raise IntegrityError("duplicate key value violates unique constraint")

    with pytest.raises(Conflict, match="already in progress"):
        await BackgroundRuns("test").claim(Taken, "already in progress", live_key="s")  # type: ignore[type-var]


async def test_close_cancels_and_waits_for_the_runs() -> None:
    runs = BackgroundRuns("test")
    unwound: list[str] = []
    running = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def work(name: str) -> None:
        try:
            running[name].set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # unwinding takes a turn of the loop
            unwound.append(name)

    runs.spawn(work("a"))
    runs.spawn(work("b"))
    for started in running.values():
        await started.wait()
    assert runs.running == 2
    await runs.close()
    assert sorted(unwound) == ["a", "b"], "close returns once the runs have unwound"
    assert runs.running == 0


async def test_a_failed_launch_releases_the_run() -> None:
    released: list[str] = []

    async def release() -> None:
        released.append("freed")

    async def launch() -> None:
        async with BackgroundRuns("test").launching(release):
            raise OSError("the start event could not be stored")

    with pytest.raises(OSError, match="could not be stored"):
        await launch()
    assert released == ["freed"]
    async with BackgroundRuns("test").launching(release):
        pass
    assert released == ["freed"], "a launch that succeeds keeps its key"
