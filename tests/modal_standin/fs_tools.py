"""Stand-in for Modal's in-container ``modal-sandbox-fs-tools`` (standard library only).

``Sandbox.filesystem`` in modal 1.6.4 is not an RPC: the SDK execs
``/__modal/.bin/modal-sandbox-fs-tools '<json command>'`` in the sandbox and
parses its stdout (JSON), or a JSON error payload on stderr with a non-zero
exit (``modal/_utils/sandbox_fs_utils.py``).  The agent maps that path to this
script.  Shapes follow the SDK's parsers; the real binary is Modal's (Rust),
so only what the SDK reads is reproduced.  Watch is a polling approximation
(one ``Modify`` event per changed path), ended by EOF on stdin as the SDK does.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import select
import shutil
import stat
import sys
import time
from typing import Any

_KINDS = {
    errno.ENOENT: "NotFound",
    errno.ENOTDIR: "NotDirectory",
    errno.EISDIR: "IsDirectory",
    errno.EEXIST: "PathAlreadyExists",
    errno.ENOTEMPTY: "DirectoryNotEmpty",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
}


def fail(kind: str, message: str) -> None:
    sys.stderr.write(json.dumps({"error_kind": kind, "message": message}))
    sys.exit(1)


def _name(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def info(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISLNK(st.st_mode):
        kind = "symlink"
    else:
        kind = "file"
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": st.st_mode,
        "permissions": stat.filemode(st.st_mode),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
        "modified_time": st.st_mtime,
        "symlink_target": os.readlink(path) if kind == "symlink" else None,
    }


def snapshot(root: str, recursive: bool) -> dict[str, float]:
    found: dict[str, float] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                found[path] = os.lstat(path).st_mtime_ns
            except OSError:
                continue
        if not recursive:
            break
    return found


def watch(args: dict[str, Any]) -> None:
    root, recursive = args["path"], bool(args.get("recursive"))
    before = snapshot(root, recursive)
    deadline = time.monotonic() + args["timeout_secs"] if args.get("timeout_secs") else None
    while deadline is None or time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.2)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            return  # the SDK closes stdin to stop a watch
        after = snapshot(root, recursive)
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path):
                kind = (
                    "Remove" if path not in after else "Create" if path not in before else "Modify"
                )
                print(json.dumps({"event_type": kind, "paths": [path]}), flush=True)
        before = after


def main() -> None:
    command = json.loads(sys.argv[1])
    ((op, args),) = command.items()
    path = args["path"]
    try:
        if op == "ListFiles":
            if not os.path.isdir(path):
                fail("NotFound" if not os.path.lexists(path) else "NotDirectory", "not a directory")
            entries = [info(os.path.join(path, name)) for name in sorted(os.listdir(path))]
            sys.stdout.write(json.dumps(entries))
        elif op == "Stat":
            sys.stdout.write(json.dumps(info(path)))
        elif op == "ReadFile":
            if os.path.isdir(path):
                fail("IsDirectory", "is a directory")
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer)
        elif op == "WriteFile":
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            if os.path.isdir(path):
                fail("IsDirectory", "is a directory")
            with open(path, "wb") as fh:
                shutil.copyfileobj(sys.stdin.buffer, fh)
        elif op == "Remove":
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path) if args.get("recursive") else os.rmdir(path)
            else:
                os.unlink(path)
        elif op == "MakeDirectory":
            if args.get("parents"):
                os.makedirs(path, exist_ok=True)
            else:
                os.mkdir(path)
        elif op == "Watch":
            watch(args)
        else:
            fail("NotSupported", f"unknown command {op}")
    except OSError as exc:
        fail(_KINDS.get(exc.errno or 0, "Other"), exc.strerror or str(exc))


if __name__ == "__main__":
    main()
