"""The sandbox runtime: where candidate code runs, behind one contract.

* ``base`` -- the ``SandboxBackend`` contract: its value types, errors,
  capabilities (``shares_sandboxes_across_replicas``, ``agent_proxy_route``),
  the checks every backend runs on its input first (argv, environment,
  timeouts, terminal sizes, limits, specs), the ``Language`` enum and the
  ``run`` helper.
* ``paths`` -- workspace path normalization (both backends and the API).
* ``logged`` -- ``suppressed``, the one way to swallow an exception (logged).
* ``local/`` -- the bubblewrap backend (development, tests, one host).
* ``modal/`` -- the Modal backend (production).
* ``harness/`` -- test runs: the in-sandbox supervisor and workers, and the
  host side that ships them and reads their results.

Imports: the standard library, the Modal SDK (in ``modal/`` only) and this
package; nothing else of the project's (``models``, ``resolvers`` and ``gql``
import it, never the reverse).  ``base`` and ``logged`` import no other part
of it, ``paths`` only ``base``; ``local/`` and ``modal/`` import those three
and never each other; ``harness/`` imports them on the host side only.
Checked by tests/sandbox/test_layout.py.
"""
