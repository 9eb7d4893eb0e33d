"""The operations: plain async functions and small services, no GraphQL here.

What lives here, by role:

* Domain operations, one domain per module -- ``accounts``, ``auth`` (tokens
  and principals), ``questions``, ``sessions``, ``workspace`` (files through
  the API), ``commands``, ``terminals``, ``testruns`` with ``judging``,
  ``claude`` (the agent) with ``claude_stream`` and ``agent_launch``,
  ``notes``, ``recordings``, ``watching`` (subscriptions' side), ``languages``,
  ``seed`` (the demo account).
* The session event log -- ``event_kinds`` (every kind and its typed payload:
  the one source of truth), ``event_payload`` (their machinery), ``events``
  (append with a gap-free seq, store, publish), ``live`` (replay then follow),
  ``output`` (coalescing), ``visibility`` (what a caller may see),
  ``files``/``workspace_sync``/``storage`` (content-addressed blobs, syncing a
  sandbox into the recording, per-session caps), ``pagination``.
* Infrastructure services the app factory builds once per process --
  ``database``, ``bus`` (Redis or in-memory fan-out), ``sandboxes`` (the
  backend behind the circuit breaker of ``breaker``), ``reaper`` (idle,
  expired and orphaned things, blob collection), ``background`` (the
  lifecycle of test and agent runs), ``settling`` (waiting on another
  request's work without polling), ``revocations`` (closing sockets of dead
  tokens), ``anthropic_proxy`` (the agent's only way to Anthropic).
* Shared rules -- ``errors`` (the exception tree the GraphQL layer maps to
  ``extensions.code``), ``validation`` (input checks that name the field).

Imports: ``models``, ``modal_app``, the standard library and third-party
libraries (Tortoise, broadcaster, httpx); never ``gql``, Strawberry or
Starlette (checked by tests/test_layers.py).
"""
