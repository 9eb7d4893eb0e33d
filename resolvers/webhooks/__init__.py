"""Signed webhooks (Standard Webhooks) through a transactional outbox.

- ``outbox.enqueue``: queue an event in the transaction of the change it reports.
- ``events``: the ``data`` of session and test-run events.
- ``worker.DeliveryWorker``: delivers, on every replica, in order per endpoint.
- ``claims``: leasing deliveries across replicas, recording attempts, disabling.
- ``sender``/``ssrf``/``signing``: one attempt, where it may go, how it is signed.
- ``endpoints``: the endpoints and delivery log the API manages.
"""

from resolvers.webhooks.outbox import EVENT_TYPES, enqueue

__all__ = ["EVENT_TYPES", "enqueue"]
