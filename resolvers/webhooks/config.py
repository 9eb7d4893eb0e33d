"""How the delivery worker behaves: built by the app factory from gql.settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from resolvers.credentials import CredentialBox

# Standard Webhooks' recommended schedule (Svix's): retries after 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h and 10 h -- eight attempts over about 27 hours, so a receiver that is
# down for an hour, or for most of a day, still gets everything.
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Each wait is the schedule's times a random factor in this range, so deliveries that
# failed together (a receiver's outage) do not all come back in the same second.
JITTER = (0.8, 1.2)
EXCERPT_BYTES = 4096
"""How much of a receiver's response is read and kept; the rest is never read."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    allow_private_networks: bool = False
    """Development and tests: private/loopback targets and plain http are allowed."""
    retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S
    timeout_s: float = 10.0
    """For one attempt, from connecting to the end of the (capped) response."""
    poll_interval_s: float = 1.0
    """How often an idle worker looks for due deliveries (an enqueue in the same process
    wakes it at once; this bounds the latency of retries and of other replicas' events)."""
    concurrency: int = 16
    """Endpoints served at once by one replica (each endpoint's deliveries are serial);
    0: this replica delivers nothing (replicas dedicated to serving the API)."""
    credentials: CredentialBox = field(default_factory=CredentialBox.random, repr=False)
    """Opens the sealed credentials of Greenhouse callbacks (``resolvers.credentials``)."""

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule_s) + 1

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery stays claimed: well past an attempt's timeout, so
        only a replica that died (or hung) mid-delivery loses it to another."""
        return 2 * self.timeout_s + 5
