"""``suppressed``: the one way modal_app swallows an exception, and says so in the log.

Best-effort steps (killing a process that may be gone, flushing a workspace
before its sandbox ends, closing a client at shutdown) must not turn a
result into an error, but a failure there is still worth knowing about:
``suppressed`` logs what failed, the exception, and why going on is safe.
Cancellation (``BaseException``) is never swallowed.  Imports only the
standard library.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def suppressed(
    log: logging.Logger, what: str, *, safe_because: str, level: int = logging.WARNING
) -> Iterator[None]:
    """Run the block; if it raises an ``Exception``, log it at ``level`` and go on.

    ``level``: WARNING when the failure means something may be left behind,
    DEBUG when it is routine (the process had already ended, say).
    """
    try:
        yield
    except Exception as exc:
        log.log(
            level,
            "%s failed (%s: %s); going on: %s",
            what,
            type(exc).__name__,
            exc,
            safe_because,
            exc_info=level >= logging.WARNING,
        )


__all__ = ["suppressed"]
