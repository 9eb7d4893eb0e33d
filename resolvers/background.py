"""The lifecycle every background run shares (test runs, agent runs).

1. ``claim``: create the run's row with its live key. The key is unique per
   session in the database, so two replicas racing to start a run of one
   session cannot both win: the loser's ``IntegrityError`` becomes CONFLICT.
   If a step before the task starts fails, ``launching`` releases the key.
2. ``spawn``: run the work as a task this replica keeps track of.
3. ``result_writer``: a task that records results as they come (a queue
   consumer) is always told the end and always awaited, however the run
   ends: an exception in the run must not leave the writer waiting forever.
4. ``close``: on shutdown, cancel the tasks and wait for them to unwind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from tortoise.exceptions import IntegrityError
from tortoise.models import Model

from resolvers.errors import Conflict

logger = logging.getLogger("interviewlm.background")
M = TypeVar("M", bound=Model)
T = TypeVar("T")
# How long a shutdown waits for cancelled runs to unwind before it goes on
# (within the 10 s the app gives each shutdown step, so the warning is logged).
CLOSE_TIMEOUT_S = 5.0


class BackgroundRuns:
    """The background runs of one kind that this replica started."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, model: type[M], conflict: str, **fields: Any) -> M:
        """Create the run's row (``fields`` include its ``live_key``); CONFLICT if taken."""
        try:
            return await model.create(**fields)
        except IntegrityError:
            raise Conflict(conflict) from None

    @asynccontextmanager
    async def launching(self, release: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
        """The steps between ``claim`` and ``spawn``: if one fails, ``release`` ends the run
        and frees its live key (or every later start of the session would be CONFLICT,
        and the reaper only frees the keys of replicas that are gone)."""
        try:
            yield
        except BaseException:
            try:
                await release()
            except Exception:  # the failure being raised is the one that matters
                logger.exception("releasing a %s run that failed to start failed", self.name)
            raise

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        if pending:  # logged, not raised: the shutdown goes on (the reaper ends such runs)
            logger.warning("%d %s run(s) still unwinding at shutdown", len(pending), self.name)


@asynccontextmanager
async def result_writer(
    write: Callable[[asyncio.Queue[T | None]], Coroutine[Any, Any, None]],
) -> AsyncIterator[asyncio.Queue[T | None]]:
    """A queue whose items ``write`` records in a task; ``None`` on the queue ends it.

    On leaving the block, normally or by an exception, the end is queued and the
    writer awaited, so what was queued is recorded before the run is finished.
    Cancelled (a shutdown), the writer is cancelled too.
    """
    queue: asyncio.Queue[T | None] = asyncio.Queue()
    task = asyncio.create_task(write(queue))
    try:
        yield queue
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    except Exception:
        queue.put_nowait(None)
        try:
            await task
        except Exception:  # the run's own exception is the one to raise
            logger.exception("a result writer failed while its run was failing")
        raise
    queue.put_nowait(None)
    # Cancelled here (a shutdown), the awaited writer is cancelled with it.
    await task
