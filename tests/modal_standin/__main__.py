"""Run the Modal stand-in as a process: ``python -m tests.modal_standin [--port N] [--root DIR]``.

Prints the environment the SDK needs (``MODAL_SERVER_URL``, dummy tokens) as
``export`` lines, then serves until interrupted.  This is how another test
process (the backend contract suite with ``SANDBOX_BACKEND=modal``, two API
replicas) shares one stand-in; see /work/notes/modal_standin.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.modal_standin.server import ModalStandin, remove_root


async def serve(root: Path, port: int) -> None:
    standin = ModalStandin(root)
    await standin.start(port=port)
    for key, value in standin.environ().items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await standin.stop()
        # What the clients called, for protocol notes: "RPC count" per line.
        for rpc, count in sorted(
            Counter(standin.control.calls + standin.faults.router_calls).items()
        ):
            sys.stderr.write(f"{rpc} {count}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="ilm-modal-standin-"))
    root.chmod(0o711)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(root, args.port))
    finally:
        if args.root is None:
            remove_root(root)


if __name__ == "__main__":
    main()
