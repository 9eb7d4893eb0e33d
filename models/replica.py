"""API replicas and their leases: who is alive to hold terminals, runs and sandboxes.

A row per server process (``id``: the owner string its records carry,
``host:pid:token``). Its heartbeat keeps the lease; a replica whose heartbeat is
older than the lease is lost, and the others take over what it held
(``resolvers.leases``).
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Replica(Model):
    id = fields.CharField(max_length=300, primary_key=True)
    started_at = fields.DatetimeField()
    heartbeat_at = fields.DatetimeField()
    # The lease: heartbeat plus the holder's own lease length, so observers configured
    # differently agree on it. Written and compared with the database's clock (replicas'
    # clocks may differ).
    expires_at = fields.DatetimeField(db_index=True)
    # Set when it stopped (shut down, or declared lost by another replica): a replica
    # that finds its own row stopped has been fenced off and must not carry on as before.
    stopped_at = fields.DatetimeField(null=True)

    class Meta:
        table = "replica"
