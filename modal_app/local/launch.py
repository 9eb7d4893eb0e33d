"""What one bwrap invocation is handed besides its argv: data in file descriptors.

Nothing host-specific or secret may be in an argv, because argvs are public:

* on the host, ``/proc/<pid>/cmdline`` of the outer bwrap is world-readable
  (``ps``), and the sandbox environment holds per-run tokens;
* inside the sandbox, pid 1 is bwrap's own forked init, so its cmdline —
  visible to the candidate as ``/proc/1/cmdline`` — is bwrap's argv, which
  named every host path (sandbox root, sandbox id) and every ``--setenv``.

So bwrap's options (environment included) travel in a memfd read with
``--args FD``, the generated ``/etc`` files in memfds copied with ``--file``
(a bind mount of a host file would show its host path in
``/proc/self/mountinfo``), and the seccomp program in a memfd for
``--seccomp``.  The argv that remains is ``bwrap --args N -- <command>``.

The environment is deliberately *not* passed as the launching process's own
environment: prlimit and bwrap run on the host, outside every namespace, and
a candidate-chosen ``LD_PRELOAD`` or ``LD_LIBRARY_PATH`` there would run code
on the host before the sandbox exists.

With cgroups, the outer process first waits on a gate pipe in a tiny shell,
so the server can move it into the sandbox's group before bwrap creates its
namespaces: the sandbox's cgroup namespace is then rooted at its own group and
``/proc/self/cgroup`` shows ``/`` instead of the host's group path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modal_app.local.presets import GENERATED_ETC
from modal_app.local.seccomp import FILTER


def memfd(name: str, data: bytes) -> int:
    """A close-on-exec fd holding ``data``, positioned at its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class LaunchFds:
    """The fds one invocation passes to bwrap; the caller closes them after the spawn."""

    seccomp: int
    etc: dict[str, int]
    extra: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, etc_files: Mapping[str, str] = GENERATED_ETC) -> LaunchFds:
        fds = cls(seccomp=memfd("seccomp", FILTER), etc={})
        try:
            for name, content in etc_files.items():
                fds.etc[name] = memfd(name, content.encode())
        except BaseException:
            fds.close()
            raise
        return fds

    def args_fd(self, options: Sequence[str]) -> int:
        """bwrap's ``--args`` data: NUL-terminated options (NULs are refused in env values)."""
        fd = memfd("bwrap-args", b"".join(o.encode() + b"\0" for o in options))
        self.extra.append(fd)
        return fd

    def all(self) -> list[int]:
        return [self.seccomp, *self.etc.values(), *self.extra]

    def close(self) -> None:
        for fd in self.all():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.etc.clear()
        self.extra.clear()


def gate_argv(bash: str, gate_fd: int) -> list[str]:
    """A prefix that waits for one line on ``gate_fd`` before exec'ing the rest.

    bash, not dash: dash redirects only single-digit fds.  EOF without the
    line (the server gave up) exits instead of running anything.
    """
    script = f'read -r go <&{gate_fd} || exit 125; exec {gate_fd}<&-; exec "$@"'
    return [bash, "--norc", "--noprofile", "-c", script, "gate"]
