"""Workspace path validation shared by every backend and by the API layer.

A workspace path names something inside ``/workspace``.  Callers may pass it
relative (``src/main.py``) or absolute under the workspace
(``/workspace/src/main.py``); either way it is reduced to one canonical form:
'/'-separated, relative to ``/workspace``, no leading or trailing slash, no
``.`` or empty components, and ``""`` for the workspace root.

The check is purely lexical.  Any ``..`` component is refused outright rather
than resolved, because resolving it correctly needs the filesystem (a symlinked
parent changes what ``..`` means); symlink escapes are each backend's job,
where the filesystem is visible.
"""

from __future__ import annotations

from modal_app.base import WORKSPACE, InvalidPath

# Linux limits (PATH_MAX, NAME_MAX).  Checking them here turns an obscure
# ENAMETOOLONG from deep inside a backend into a clear InvalidPath up front.
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def normalize_workspace_path(path: str) -> str:
    """Return ``path`` relative to /workspace in canonical form, or raise InvalidPath."""
    if "\x00" in path:
        raise InvalidPath("path contains a NUL byte")
    if path.startswith("/"):
        if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
            path = path[len(WORKSPACE) :]
        else:
            raise InvalidPath(f"{path!r} is outside {WORKSPACE}")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise InvalidPath(f"{path!r} contains a '..' component")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise InvalidPath(f"a path component is longer than {MAX_NAME_BYTES} bytes")
        parts.append(part)
    relative = "/".join(parts)
    absolute_bytes = len(WORKSPACE) + 1 + len(relative.encode("utf-8", "surrogateescape"))
    if absolute_bytes > MAX_PATH_BYTES:
        raise InvalidPath(f"path is longer than {MAX_PATH_BYTES} bytes")
    return relative


def workspace_abspath(relative: str) -> str:
    """The absolute in-sandbox path of an already normalized workspace path."""
    return f"{WORKSPACE}/{relative}" if relative else WORKSPACE
