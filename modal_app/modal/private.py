"""Private execs on Modal (best effort): a launcher that runs a command with nothing to keep.

A Modal sandbox is one container and its commands share it, so the local
backend's per-exec bubblewrap has no equivalent.  ``private_argv`` wraps a
command in a small launcher (Python, standard library only, run as the
container's root) that:

1. copies the workspace into a fresh root-owned directory (regular files,
   directories and symlinks; sockets, FIFOs and devices are left out, so a
   candidate's terminal cannot listen on one);
2. in a new mount namespace if the runtime allows it (``unshare``), binds
   that copy read-only over the workspace and mounts fresh tmpfs over
   ``/tmp``, ``/var/tmp`` and ``/dev/shm``;
3. runs the command as an unprivileged uid (``PRIVATE_UID``) that can write
   only its own fresh home and temporary directory, with no capabilities;
4. when the command has ended, kills every process of that uid and deletes
   its directories and every file it owns in the shared temporary places.

The launcher is the one command the exec wrapper leaves as root
(``shell.exec_wrapper_argv(run_as=None)``); candidate terminals and commands
run as ``shell.CANDIDATE_UID``, so none of them can watch the run.  Go's
build cache starts empty in a private run on Modal.
"""

from __future__ import annotations

from collections.abc import Sequence

from modal_app.base import WORKSPACE

PRIVATE_UID = 64_999
"""The uid private commands run as on Modal (owns nothing in the image)."""

LAUNCHER = r"""
import ctypes, os, secrets, shutil, signal, stat, sys
uid = int(sys.argv[1]); workspace = sys.argv[2]; argv = sys.argv[3:]
SHARED = ("/tmp", "/var/tmp", "/dev/shm")
name = "ilm-private-" + secrets.token_hex(8)
parent = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)  # to clean up once /tmp is covered
base = os.path.join("/tmp", name)
os.mkdir(base, 0o711)
copy = os.path.join(base, "workspace"); home = os.path.join(base, "home")
tmp = os.path.join(base, "tmp")
D = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
F = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
def clone(src, dst):
    with os.scandir(src) as it:
        entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
    for name, st in entries:
        mode = stat.S_IMODE(st.st_mode) & 0o755
        try:
            if stat.S_ISDIR(st.st_mode):
                s = os.open(name, D, dir_fd=src)
                try:
                    os.mkdir(name, 0o755, dir_fd=dst)
                    d = os.open(name, D, dir_fd=dst)
                    try:
                        clone(s, d)
                    finally:
                        os.close(d)
                finally:
                    os.close(s)
            elif stat.S_ISREG(st.st_mode):
                s = os.open(name, F, dir_fd=src)
                try:
                    if not stat.S_ISREG(os.fstat(s).st_mode):
                        continue
                    w = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                    d = os.open(name, w, mode | 0o444, dir_fd=dst)
                    try:
                        while chunk := os.read(s, 1 << 20):
                            os.write(d, chunk)
                    finally:
                        os.close(d)
                finally:
                    os.close(s)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        except OSError:
            pass
os.mkdir(copy, 0o755)
s, d = os.open(workspace, D), os.open(copy, D)
clone(s, d)
os.close(s); os.close(d)
for path in (home, tmp):
    os.mkdir(path, 0o700); os.chown(path, uid, uid)
libc = ctypes.CDLL(None, use_errno=True)
def mount(src, dst, fstype, flags):
    return libc.mount(src.encode(), dst.encode(), fstype and fstype.encode(), flags, None) == 0
isolated = libc.unshare(0x00020000) == 0 and mount("none", "/", None, 16384 | (1 << 18))
if isolated:
    isolated = mount(copy, workspace, None, 4096 | 16384)
    isolated = isolated and mount("none", workspace, None, 32 | 4096 | 1)
    for path in SHARED:
        if os.path.isdir(path) and mount("tmpfs", path, "tmpfs", 2 | 4):
            os.chmod(path, 0o1777)
env = dict(os.environ, HOME=home, TMPDIR=tmp if not isolated else "/tmp")
if isolated:
    os.mkdir("/tmp/home", 0o700); os.chown("/tmp/home", uid, uid); env["HOME"] = "/tmp/home"
cwd = os.getcwd()
pid = os.fork()
if pid == 0:
    try:
        os.setgroups([]); os.setgid(uid); os.setuid(uid)
        os.chdir(cwd if isolated or not cwd.startswith(workspace) else copy)
        os.execvpe(argv[0], argv, env)
    finally:
        os._exit(127)
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
killer = os.fork()
if killer == 0:
    os.setgid(uid); os.setuid(uid)
    try:
        os.kill(-1, signal.SIGKILL)
    finally:
        os._exit(0)
os.waitpid(killer, 0)
shutil.rmtree(name, dir_fd=parent, ignore_errors=True)
if not isolated:
    for top in SHARED:
        for root, dirs, files in os.walk(top, topdown=False):
            for name in dirs + files:
                path = os.path.join(root, name)
                try:
                    if os.lstat(path).st_uid == uid:
                        (os.rmdir if name in dirs and not os.path.islink(path) else os.unlink)(path)
                except OSError:
                    pass
sys.exit(status if status >= 0 else 128 - status)
"""
"""Arguments: the private uid, the workspace, then the command's argv."""


def private_argv(
    argv: Sequence[str], *, uid: int = PRIVATE_UID, workspace: str = WORKSPACE
) -> list[str]:
    """``argv`` run through the private launcher (see the module doc)."""
    return ["python3", "-I", "-S", "-c", LAUNCHER, str(uid), workspace, *argv]


__all__ = ["LAUNCHER", "PRIVATE_UID", "private_argv"]
