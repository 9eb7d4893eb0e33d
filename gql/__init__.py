"""The GraphQL surface and the process.

* ``app`` -- the Starlette app factory: settings from the environment
  (``settings``), one lifespan that opens the database, the bus, the sandbox
  backend (``backends``), the reaper and the agent proxy, and closes them.
* ``schema`` and the ``*_ops`` modules -- the root Query, Mutation and
  Subscription (``subscriptions``) fields: each authenticates, calls one
  resolver and converts the result into a type of ``types/``.
* ``http``, ``view``, ``ws``, ``parsing``, ``context``, ``errors`` -- GraphQL
  over HTTP and WebSocket with bounded cost, the per-request context, and the
  mapping of resolver errors to ``extensions.code``.
* ``renders`` -- one rendering of a live batch for every watcher given it.
* ``anthropic_proxy`` -- the agent's Messages API proxy as HTTP routes.
* ``cli`` -- the ``interviewlm`` command.

Imports: ``resolvers``, ``models``, ``modal_app`` and the web stack; nothing
imports ``gql`` (checked by tests/test_layers.py).
"""
