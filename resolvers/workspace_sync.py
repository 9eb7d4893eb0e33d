"""Bringing changes made inside a sandbox into the recording.

Commands, the terminal and the agent change files without going through
``writeFile``. After each of them (and before a sandbox is terminated) the
workspace is listed and compared with the session's snapshot; what differs
becomes ``file.written`` / ``file.deleted`` events with ``source: "sandbox"``.

Not recorded: tool caches and dependencies (any directory whose name starts
with a dot, but for the agent's config dir; ``node_modules``, ``__pycache__``)
and files over the file size limit (recorded as ``file.skipped`` with their
size, so the gap is visible). Server secrets found in a file (the agent could
write its API key somewhere) are replaced before anything is stored.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from models.sandbox import SandboxRecord
from resolvers.files import sha256_hex

if TYPE_CHECKING:
    from resolvers.sandboxes import Sandboxes

IGNORED_DIRS = frozenset({"node_modules", "__pycache__"})


# The agent's config dir (its conversations, for --resume) is kept with the
# workspace, so it survives a sandbox restart like the candidate's files.
KEPT_DIRS = (".interviewlm/claude/",)


def tracked(path: str) -> bool:
    if path.startswith(KEPT_DIRS):
        return True
    directories = path.split("/")[:-1]
    return not any(d.startswith(".") or d in IGNORED_DIRS for d in directories)


async def sync_workspace(
    sandboxes: Sandboxes, record: SandboxRecord, *, source: str = "sandbox"
) -> int:
    """Record every difference; returns how many paths changed."""
    backend, sandbox_id = sandboxes.backend, record.backend_id or ""
    session_id = record.session_id
    entries = await sandboxes.call(lambda: backend.list_files(sandbox_id, "", recursive=True))
    known = await sandboxes.files.current(session_id)
    present = {e.path: e for e in entries if e.kind == "file" and tracked(e.path)}
    changed = 0
    for path, entry in sorted(present.items()):
        if entry.size > sandboxes.policy.max_file_bytes:
            if path not in known:
                await sandboxes.log.append(
                    session_id, "file.skipped", {"path": path, "size": entry.size}
                )
            continue
        data = sandboxes.redact(await sandboxes.call(partial(backend.read_file, sandbox_id, path)))
        old = known.get(path)
        if old is None or old.sha256 != sha256_hex(data):
            await sandboxes.files.written(session_id, path, data, source=source)
            changed += 1
    for path in sorted(p for p in set(known) - set(present) if tracked(p)):
        await sandboxes.files.deleted(session_id, path, source=source)
        changed += 1
    return changed
