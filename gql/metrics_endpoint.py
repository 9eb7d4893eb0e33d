"""``GET /metrics``: the series of resolvers.metrics in the Prometheus text format.

Access (a decision, documented in the README): served on the API's own port and open
by default, like ``/healthz`` -- it holds counts and durations by operation, code,
state and outcome, never an id, a name or content. ``METRICS=false`` removes the
route (a deployment scraping something else, or not at all). ``METRICS_TOKEN`` set:
only ``Authorization: Bearer <METRICS_TOKEN>`` gets the page, anything else 401 --
for deployments whose ingress cannot keep ``/metrics`` private.

Two series are set here rather than where things happen:

- ``interviewlm_sandboxes{state}``: on each scrape, from the registry (the database):
  this replica's sandboxes that are STARTING or RUNNING. A count kept in memory would
  drift from what the reaper, the reconciliation at start-up and other replicas do to
  the rows; the query is one small ``GROUP BY``. It is never cancelled (a query
  cancelled inside Tortoise's SQLite client can leave its lock taken): a scrape waits
  at most ``SCRAPE_QUERY_WAIT_S`` and otherwise serves the previous values.
- ``interviewlm_event_loop_lag_seconds``: a task started by the app's lifespan asks to
  be woken every ``LAG_INTERVAL_S`` and observes how late it wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from tortoise.functions import Count

from gql.settings import Settings
from models.sandbox import SandboxRecord
from resolvers import metrics
from resolvers.sandboxes import LIVE, Sandboxes

logger = logging.getLogger("interviewlm.metrics")
LAG_INTERVAL_S = 0.25
SCRAPE_QUERY_WAIT_S = 2.0


class SandboxGauge:
    """Sets ``interviewlm_sandboxes{state}`` from the registry, one query at a time."""

    def __init__(self, sandboxes: Sandboxes) -> None:
        self.sandboxes = sandboxes
        self._query: asyncio.Task[dict[str, int]] | None = None

    async def _counts(self) -> dict[str, int]:
        rows = (
            await SandboxRecord.filter(owner=self.sandboxes.owner, state__in=LIVE)
            .annotate(n=Count("id"))
            .group_by("state")
            .values_list("state", "n")
        )
        return {str(state): int(n) for state, n in rows}

    async def refresh(self) -> None:
        if self._query is None or self._query.done():
            self._query = asyncio.create_task(self._counts())
        done, _ = await asyncio.wait([self._query], timeout=SCRAPE_QUERY_WAIT_S)
        if not done:
            logger.warning(
                "sandbox counts took over %s s; serving the last ones", SCRAPE_QUERY_WAIT_S
            )
            return
        try:
            counts = self._query.result()
        except Exception as exc:  # a scrape reports what it has; the database may be down
            logger.warning("sandbox counts failed: %s", exc)
            return
        for state in LIVE:
            metrics.SANDBOXES.labels(state.value.lower()).set(counts.get(state.value, 0))


def metrics_routes(settings: Settings, sandboxes: Sandboxes) -> list[Route]:
    if not settings.metrics:
        return []
    gauge = SandboxGauge(sandboxes)
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    async def page(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, expected):
                return PlainTextResponse(
                    "a metrics token is required\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        await gauge.refresh()
        # The text format Prometheus asks for (or OpenMetrics, if it asks for that).
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(metrics.REGISTRY), headers={"Content-Type": media_type})

    return [Route("/metrics", page, methods=["GET"])]


async def _sample_lag(interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval_s)  # call_later underneath
        metrics.EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked - interval_s))


@contextlib.asynccontextmanager
async def loop_lag_sampled(interval_s: float = LAG_INTERVAL_S) -> AsyncIterator[None]:
    """The event-loop lag sampler, for as long as the app runs (it touches nothing
    but the histogram, so cancelling it is safe)."""
    task = asyncio.create_task(_sample_lag(interval_s), name="event-loop-lag")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
