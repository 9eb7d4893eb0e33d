"""The delivery worker: one per replica, all of them working on the same outbox.

The loop claims due heads (one per endpoint, ``claims.claim_heads``) and serves each
endpoint in a task of its own: attempt, record, and on success lease that endpoint's next
run (its head and up to ``RUN`` deliveries behind it, ``claims.claim_run``) right away, so
a backlog drains at the pace of the receiver rather than of the poll. An
enqueue in this process wakes the loop at once (``outbox.on_enqueue``); events enqueued
on other replicas, and retries, are found by polling every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx

from resolvers.webhooks import claims, outbox
from resolvers.webhooks.config import WebhookConfig
from resolvers.webhooks.sender import AttemptResult, new_client, send, tls_context

logger = logging.getLogger("interviewlm.webhooks")
# After a wake the loop looks again a few times in quick succession: the enqueue that
# rang may not have committed yet when the first look runs.
WAKE_FOLLOW_UPS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
RUN = 32
"""Deliveries of one endpoint leased together when it has a backlog (sent one by one)."""


class DeliveryWorker:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        """Read afresh on every step, so it may be replaced while the worker runs."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.paused = False
        """Set, this replica claims nothing new (a draining replica; tests that need
        deliveries to go through other replicas); what it holds finishes."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.tls = tls_context()
        """What attempts trust (certifi's CAs; tests add their own CA)."""
        self._busy: set[uuid.UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self, endpoint_ids: set[uuid.UUID] | None = None) -> None:
        """Look for due deliveries now: for ``endpoint_ids`` (None: any). An endpoint
        served here needs no look: its task takes the new delivery after its current one."""
        if endpoint_ids is None or not endpoint_ids <= self._busy:
            self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DeliveryWorker]:
        unregister = outbox.on_enqueue(self.wake)
        loop = asyncio.create_task(self._loop(), name="webhook-worker")
        try:
            yield self
        finally:
            unregister()
            # Stopped between steps, not cancelled mid-step: a task cancelled while a
            # transaction is starting leaves Tortoise's SQLite connection lock taken,
            # and every later query (the rest of the shutdown included) waits forever.
            # Only a step that overruns an attempt's timeout is cancelled.
            self._stopping.set()
            self._wake.set()
            pending = [loop, *self._tasks]
            _, overrun = await asyncio.wait(pending, timeout=self.config.timeout_s + 2)
            for task in overrun:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            try:
                await claims.release(self.owner)
            except Exception:  # the leases expire anyway
                logger.exception("releasing webhook leases at shutdown failed")

    async def _loop(self) -> None:
        follow_ups: list[float] = []
        while not self._stopping.is_set():
            try:
                await self._claim_and_spawn()
            except Exception:  # a database hiccup must not end the worker
                logger.exception("claiming webhook deliveries failed")
            if self._stopping.is_set():
                return
            timeout = follow_ups.pop(0) if follow_ups else self.config.poll_interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self._wake.is_set():
                self._wake.clear()
                follow_ups = list(WAKE_FOLLOW_UPS_S)

    async def _claim_and_spawn(self) -> None:
        free = self.config.concurrency - len(self._busy)
        if free <= 0 or self.paused:
            return
        # Endpoints served here are left out: their task claims their next run itself.
        for claimed in await claims.claim_heads(
            self.owner, self.config, limit=free, busy=set(self._busy)
        ):
            self._busy.add(claimed.endpoint_id)
            task = asyncio.create_task(self._serve_endpoint(claimed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_endpoint(self, head: claims.Claimed) -> None:
        """Send the endpoint's deliveries in order while it accepts them and more are due."""
        endpoint_id = head.endpoint_id
        try:
            async with new_client(self.config.timeout_s, self.tls) as client:
                run = [head]
                while run and not self._stopping.is_set() and await self._send_run(client, run):
                    run = await claims.claim_run(self.owner, self.config, endpoint_id, limit=RUN)
        except Exception:
            # The leases run out and the deliveries are retried (here or elsewhere).
            logger.exception("delivering webhooks to endpoint %s failed", endpoint_id)
        finally:
            self._busy.discard(endpoint_id)
            self.wake()  # what was enqueued for it as it finished is not left to the poll

    async def _send_run(self, client: httpx.AsyncClient, run: list[claims.Claimed]) -> bool:
        """Send ``run`` in order; False once one fails (the rest wait behind it).

        Successes are recorded together when the run ends (one transaction rather than
        one each): a replica dying mid-run sends those again, under the same ids."""
        endpoint_id = run[0].endpoint_id
        succeeded: list[tuple[claims.Claimed, AttemptResult]] = []
        for index, current in enumerate(run):
            config = self.config
            left_s = (current.lease_until - datetime.now(UTC)).total_seconds()
            # Too little lease left for another attempt, or shutting down: the rest is
            # released (sent here or by another replica later).
            if left_s < config.timeout_s + 1 or self._stopping.is_set():
                await claims.record_successes(succeeded, owner=self.owner, endpoint_id=endpoint_id)
                await claims.release(self.owner, [c.delivery_id for c in run[index:]])
                return True
            result = await send(
                client,
                current.attempt,
                timeout_s=config.timeout_s,
                allow_private=config.allow_private_networks,
                credentials=config.credentials,
            )
            if result.ok:
                succeeded.append((current, result))
                continue
            await claims.record_successes(succeeded, owner=self.owner, endpoint_id=endpoint_id)
            await claims.record(current, result, owner=self.owner, config=config)
            await claims.release(self.owner, [c.delivery_id for c in run[index + 1 :]])
            return False
        await claims.record_successes(succeeded, owner=self.owner, endpoint_id=endpoint_id)
        return True
