"""Background loops stop between steps, never inside a database transaction.

Tortoise's SQLite client takes its connection lock when a transaction starts; a task
cancelled right then never releases it, and every later query waits forever (seen as
a shutdown stuck on "closing the claude runs"). The webhook worker and the reaper
therefore stop on a flag and are cancelled only when a step overruns. Each loop here
is started and stopped many times at random points of its busy cycle, on the test
database; after each stop a query must still go through.
"""

from __future__ import annotations

import asyncio
import random

from starlette.applications import Starlette

from models.account import Account
from resolvers.reaper import reaper_running
from resolvers.webhooks.config import WebhookConfig
from resolvers.webhooks.worker import DeliveryWorker


async def still_answers() -> None:
    await asyncio.wait_for(Account.all().count(), timeout=5)


async def test_the_webhook_worker_stops_between_steps(app: Starlette) -> None:
    worker = DeliveryWorker(WebhookConfig(poll_interval_s=0.001, timeout_s=1))
    shuffle = random.Random(7)
    for _ in range(60):
        async with worker.running():
            await asyncio.sleep(shuffle.uniform(0, 0.01))
        await still_answers()


async def test_the_reaper_stops_between_passes(app: Starlette) -> None:
    sandboxes = app.state.services.sandboxes
    shuffle = random.Random(11)
    for _ in range(40):
        async with reaper_running(sandboxes, interval_s=0.001):
            await asyncio.sleep(shuffle.uniform(0, 0.01))
        await still_answers()
