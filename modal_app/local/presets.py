"""Language presets of the local backend: what a sandbox sees of the host, and its environment.

Every preset sees the same read-only system view (``/usr`` with the merged
``/bin``/``/lib*`` links, and a short allow-list of ``/etc`` files); presets
differ in environment (``PATH``, Go's caches, Node's heap size).  The host
toolchains live under ``/usr`` on the machines we support (Debian packages:
``python3``, ``nodejs``, ``golang-go``), so binding ``/usr`` is enough and the
checkout, ``/root``, ``/home``, ``/var`` and ``/run`` are never visible.

Python: Debian's ``/usr/bin/python3`` is used, never a pyenv build under
``/root`` (``/root`` is mode 0700 and must stay invisible).  TypeScript needs a
compiler the distribution does not ship: the operator may pass a *toolchain
directory* (a ``node_modules`` parent with ``typescript`` and the Claude CLI),
mounted read-only at ``TOOLCHAIN_MOUNT`` with its ``.bin`` on ``PATH``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass

from modal_app.base import Language, Limits

SANDBOX_USER = "sandbox"
SANDBOX_UID = 1000
"""The uid candidates see inside the sandbox (mapped to a per-sandbox host uid)."""
SANDBOX_HOME = "/home/sandbox"
TOOLCHAIN_MOUNT = "/opt/interviewlm/toolchain"

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")

# Merged-/usr distributions have these as symlinks into /usr; older layouts
# have real directories, which are bound read-only instead.
_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# The /etc entries programs need to run, and nothing that says anything about
# the host (no shadow, no hostname, no resolv.conf unless networking is opted in).
_ETC_ALLOW = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/inputrc",
    "/etc/bash.bashrc",
    "/etc/profile",
    "/etc/terminfo",
    "/etc/os-release",
)
_ETC_GLOBS = ("/etc/python3*",)

# Files the backend generates instead of exposing the host's versions.
GENERATED_ETC: Mapping[str, str] = {
    "passwd": (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{SANDBOX_HOME}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ),
    "group": f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost ip6-loopback\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\nservices: files\n",
    "hostname": "sandbox\n",
}


@dataclass(frozen=True, slots=True)
class SystemView:
    """The read-only host paths every sandbox gets, computed once per backend."""

    ro_binds: tuple[str, ...]
    """Host paths bound read-only at the same path."""
    symlinks: tuple[tuple[str, str], ...]
    """(target, link) pairs recreated inside the sandbox."""


def system_view() -> SystemView:
    """Inspect the host once: which of the allowed system paths exist and how."""
    binds: list[str] = ["/usr"]
    links: list[tuple[str, str]] = []
    for top in _TOP_LEVEL_LINKS:
        if os.path.islink(top):
            links.append((os.readlink(top), top))
        elif os.path.isdir(top):
            binds.append(top)
    etc = list(_ETC_ALLOW)
    for pattern in _ETC_GLOBS:
        etc.extend(sorted(glob.glob(pattern)))
    binds.extend(p for p in etc if os.path.exists(p))
    return SystemView(ro_binds=tuple(binds), symlinks=tuple(links))


def environment(
    language: Language | None,
    limits: Limits,
    *,
    toolchain: bool,
    term: str = "xterm-256color",
) -> dict[str, str]:
    """The base environment of a sandboxed process (before spec and per-exec env)."""
    path = list(SYSTEM_PATH)
    env = {
        "HOME": SANDBOX_HOME,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": term,
        "TMPDIR": "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
        # Output is streamed live to interviewers; block-buffered Python would
        # hold it back until exit.  Bytecode caches would clutter the workspace.
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Keep V8's heap under the per-process data limit, so a hog gets a
        # clean "heap out of memory" instead of an allocation failure abort.
        "NODE_OPTIONS": f"--max-old-space-size={max(32, limits.memory_mb * 3 // 4)}",
        # Go writes its build cache and module cache; point them at the
        # sandbox's private home.  No proxy: there is no network anyway, and
        # this fails fast instead of timing out.  cgo needs a C toolchain we
        # do not promise.
        "GOCACHE": f"{SANDBOX_HOME}/.cache/go-build",
        "GOPATH": f"{SANDBOX_HOME}/go",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
    }
    if toolchain:
        path.insert(0, f"{TOOLCHAIN_MOUNT}/node_modules/.bin")
        env["NODE_PATH"] = f"{TOOLCHAIN_MOUNT}/node_modules"
    if language is Language.GO:
        path.insert(0, f"{SANDBOX_HOME}/go/bin")
    env["PATH"] = ":".join(path)
    return env
