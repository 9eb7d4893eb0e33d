"""The seccomp filter: its tables against the kernel headers, its decisions in a
BPF interpreter (architectures this host cannot run), and live attacks from
inside the real local bubblewrap sandbox.

The live attacks call the raw syscalls through ``ctypes`` from Python in the
sandbox; each must fail with EPERM (``clone3`` with ENOSYS) without killing
the program, while ordinary Python, Node and Go programs keep working.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modal_app.base import Limits, SandboxSpec, run
from modal_app.local import seccomp as sc
from modal_app.local.backend import LocalSandboxBackend
from tests.sandbox.conftest import make_root

HEADERS = {
    "x86_64": (Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), sc.X86_64),
    "aarch64": (Path("/usr/include/asm-generic/unistd.h"), sc.AARCH64),
}


# -- the tables ------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_syscall_numbers_match_the_kernel_headers(arch: str) -> None:
    header, table = HEADERS[arch]
    if not header.is_file():
        pytest.skip(f"{header} not installed (Debian linux-libc-dev)")
    defined = {
        name: int(number)
        for name, number in re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\b", header.read_text())
    }
    wrong = {name: (nr, defined.get(name)) for name, nr in table.items() if defined[name] != nr}
    assert wrong == {}, f"(ours, header's): {wrong}"


def test_ioctl_and_errno_numbers_match_the_headers() -> None:
    ioctls = Path("/usr/include/asm-generic/ioctls.h")
    if not ioctls.is_file():
        pytest.skip("kernel headers not installed")
    defined = dict(re.findall(r"#define (TIOC\w+)\s+(0x[0-9A-Fa-f]+)", ioctls.read_text()))
    for name in ("TIOCSTI", "TIOCLINUX", "TIOCSETD"):
        assert int(defined[name], 16) == getattr(sc, name)
    assert (sc.EPERM, sc.ENOSYS, sc.EAFNOSUPPORT) == (errno.EPERM, errno.ENOSYS, errno.EAFNOSUPPORT)
    families = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
    assert families == sc.SOCKET_FAMILIES


def test_clone_and_personality_flags_match_the_headers() -> None:
    sched, persona = Path("/usr/include/linux/sched.h"), Path("/usr/include/linux/personality.h")
    if not sched.is_file() or not persona.is_file():
        pytest.skip("kernel headers not installed")
    new = re.findall(r"#define CLONE_NEW\w+\s+(0x[0-9a-fA-F]+)", sched.read_text())
    assert len(new) == 8
    assert sum(int(flag, 16) for flag in new) == sc._UNSHARE_NS
    assert sc._UNSHARE_NS & ~sc._CLONE_NS == 0x80  # CLONE_NEWTIME: unshare only
    weakening = re.findall(
        r"(?:ADDR_NO_RANDOMIZE|MMAP_PAGE_ZERO|ADDR_COMPAT_LAYOUT|READ_IMPLIES_EXEC) =\s+(0x\w+)",
        persona.read_text(),
    )
    assert sum(int(flag, 16) for flag in weakening) == sc._PERSONALITY_WEAKENING


def test_every_denied_syscall_is_in_the_x86_64_table() -> None:
    assert set(sc.DENIED) <= set(sc.X86_64)
    # aarch64 lacks only the x86-specific calls.
    assert set(sc.DENIED) - set(sc.AARCH64) == {
        "iopl", "ioperm", "modify_ldt", "uselib", "_sysctl",
        "create_module", "get_kernel_syms", "query_module",
    }  # fmt: skip


# -- the program, interpreted ----------------------------------------------------


def _evaluate(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """A classic BPF interpreter for the instructions the filter uses."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x06:
            return k
        elif code in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


X86, ARM = sc.AUDIT_ARCH_X86_64, sc.AUDIT_ARCH_AARCH64
EPERM, ENOSYS = sc.RET_ERRNO | sc.EPERM, sc.RET_ERRNO | sc.ENOSYS
EAFNOSUPPORT = sc.RET_ERRNO | sc.EAFNOSUPPORT
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x00020000, 17


@pytest.mark.parametrize(
    ("arch", "nr", "args", "expected"),
    [
        (X86, 39, (), sc.RET_ALLOW),  # getpid
        (X86, 425, (), EPERM),  # io_uring_setup
        (X86, 101, (), EPERM),  # ptrace
        (X86, 435, (), ENOSYS),  # clone3
        (X86, 56, (SIGCHLD,), sc.RET_ALLOW),  # fork-like clone
        (X86, 56, (0x003D0F00,), sc.RET_ALLOW),  # pthread_create's flags
        (X86, 56, (CLONE_NEWUSER | SIGCHLD,), EPERM),
        (X86, 272, (CLONE_NEWNS,), EPERM),
        (X86, 272, (0x80,), EPERM),  # CLONE_NEWTIME
        (X86, 272, (0x200,), sc.RET_ALLOW),  # CLONE_FS: no namespace
        (X86, 135, (0xFFFFFFFF,), sc.RET_ALLOW),  # personality query
        (X86, 135, (0,), sc.RET_ALLOW),
        (X86, 135, (0x0040000,), EPERM),  # ADDR_NO_RANDOMIZE
        (X86, 16, (0, sc.TIOCSTI), EPERM),
        (X86, 16, (0, (1 << 32) | sc.TIOCSTI), EPERM),  # cmd is an unsigned int
        (X86, 16, (0, 0x5401), sc.RET_ALLOW),  # TCGETS
        (X86, 165 | sc.X32_SYSCALL_BIT, (), sc.RET_KILL_PROCESS),  # x32 mount
        (X86, 39 | sc.X32_SYSCALL_BIT, (), sc.RET_KILL_PROCESS),
        (0x40000003, 20, (), sc.RET_KILL_PROCESS),  # i386 via int 0x80
        (ARM, 172, (), sc.RET_ALLOW),  # getpid
        (ARM, 40, (), EPERM),  # mount
        (ARM, 117, (), EPERM),  # ptrace
        (ARM, 435, (), ENOSYS),
        (ARM, 220, (CLONE_NEWUSER,), EPERM),
        (ARM, 220, (SIGCHLD,), sc.RET_ALLOW),
        (X86, 16, (0, sc.TIOCSETD), EPERM),
        (X86, 41, (1,), sc.RET_ALLOW),  # AF_UNIX
        (X86, 41, (2,), sc.RET_ALLOW),  # AF_INET
        (X86, 41, (10,), sc.RET_ALLOW),  # AF_INET6
        (X86, 41, (16,), sc.RET_ALLOW),  # AF_NETLINK
        (X86, 41, (38,), EAFNOSUPPORT),  # AF_ALG
        (X86, 53, (40,), EAFNOSUPPORT),  # socketpair(AF_VSOCK)
        (ARM, 198, (30,), EAFNOSUPPORT),  # AF_TIPC
        (ARM, 198, (2,), sc.RET_ALLOW),
    ],
)
def test_filter_decisions(arch: int, nr: int, args: tuple[int, ...], expected: int) -> None:
    assert _evaluate(sc.FILTER, nr, arch, args) == expected


# -- live, in the real sandbox ---------------------------------------------------

live = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None,
    reason="the local backend needs root and bubblewrap",
)


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalSandboxBackend]:
    root = make_root()
    backend = LocalSandboxBackend(root, tmp_size_mb=16)
    await backend.start()
    yield backend
    await backend.aclose()
    shutil.rmtree(root.parent, ignore_errors=True)


ATTACK = r"""
import ctypes, errno, json, os, pty
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and nr == 56:
        os._exit(0)  # a clone that succeeded: the copy leaves at once
    return errno.errorcode.get(ctypes.get_errno(), "OK") if r == -1 else "OK"
buf = ctypes.create_string_buffer(256)
master, slave = pty.openpty()
sibling = os.fork()
if sibling == 0:
    import time; time.sleep(30); os._exit(0)
res = {
    "io_uring_setup": call(425, 8, ctypes.addressof(buf)),
    "io_uring_enter": call(426, 0, 1, 0, 0),
    "bpf": call(321, 0, ctypes.addressof(buf), 72),
    "keyctl": call(250, 0, -3, 0),
    "add_key": call(248, ctypes.addressof(ctypes.create_string_buffer(b"user")),
                    ctypes.addressof(ctypes.create_string_buffer(b"k")), 0, 0, -3),
    "unshare_newuser": call(272, 0x10000000),
    "unshare_newns": call(272, 0x00020000),
    "clone_newuser": call(56, 0x10000000 | 17, 0, 0, 0, 0),
    "clone3": call(435, ctypes.addressof(buf), 88),
    "mount": call(165, ctypes.addressof(ctypes.create_string_buffer(b"none")),
                  ctypes.addressof(ctypes.create_string_buffer(b"/tmp")),
                  ctypes.addressof(ctypes.create_string_buffer(b"tmpfs")), 0, 0),
    "umount2": call(166, ctypes.addressof(ctypes.create_string_buffer(b"/workspace")), 2),
    "pivot_root": call(155, ctypes.addressof(ctypes.create_string_buffer(b"/tmp")),
                       ctypes.addressof(ctypes.create_string_buffer(b"/tmp"))),
    "fsopen": call(430, ctypes.addressof(ctypes.create_string_buffer(b"tmpfs")), 0),
    "open_tree": call(428, -100, ctypes.addressof(ctypes.create_string_buffer(b"/")), 1),
    "ptrace_attach": call(101, 16, sibling, 0, 0),
    "ptrace_traceme": call(101, 0, 0, 0, 0),
    "process_vm_readv": call(310, sibling, 0, 0, 0, 0, 0),
    "init_module": call(175, 0, 0, 0),
    "finit_module": call(313, 0, 0, 0),
    "kexec_load": call(246, 0, 0, 0, 0),
    "clock_settime": call(227, 0, ctypes.addressof(buf)),
    "settimeofday": call(164, ctypes.addressof(buf), 0),
    "perf_event_open": call(298, ctypes.addressof(buf), 0, -1, -1, 0),
    "userfaultfd": call(323, 0),
    "swapon": call(167, 0, 0),
    "reboot": call(169, 0xfee1dead, 672274793, 0x1234567, 0),
    "acct": call(163, 0),
    "personality_norandom": call(135, 0x0040000),
    "open_by_handle_at": call(304, -100, ctypes.addressof(buf), 0),
    "setns": call(308, os.open("/proc/self/ns/uts", os.O_RDONLY), 0),
    "tiocsti": "OK" if libc.ioctl(slave, 0x5412, ctypes.c_char_p(b"x")) == 0
               else errno.errorcode[ctypes.get_errno()],
    "tiocsetd": "OK" if libc.ioctl(slave, 0x5423, ctypes.byref(ctypes.c_int(13))) == 0
               else errno.errorcode[ctypes.get_errno()],
}
import socket
for name, family in (("af_alg", 38), ("af_vsock", 40), ("af_tipc", 30)):
    try:
        socket.socket(family, socket.SOCK_SEQPACKET if family != 40 else socket.SOCK_STREAM)
        res[name] = "OK"
    except OSError as e:
        res[name] = errno.errorcode[e.errno]
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
    socket.socket(family, socket.SOCK_DGRAM).close()
os.kill(sibling, 9)
print(json.dumps(res))
"""


@live
@pytest.mark.timeout(120)
async def test_denied_syscalls_fail_with_eperm(local: LocalSandboxBackend) -> None:
    info = await local.create(SandboxSpec())
    await local.write_file(info.id, "attack.py", ATTACK.encode())
    result = await run(local, info.id, ["python3", "attack.py"], timeout_s=60)
    assert result.exit_code == 0, result.stderr.decode()
    outcome = json.loads(result.stdout)
    expected = {name: "EPERM" for name in outcome}
    expected["clone3"] = "ENOSYS"
    expected.update(af_alg="EAFNOSUPPORT", af_vsock="EAFNOSUPPORT", af_tipc="EAFNOSUPPORT")
    assert outcome == expected
    await local.terminate(info.id)


PROGRAMS = {
    "threads.py": (
        "import threading, subprocess, multiprocessing, asyncio\n"
        "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n"
        "with multiprocessing.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))\n"
        "async def main():\n"
        "    proc = await asyncio.create_subprocess_exec('true')\n"
        "    print('async', await proc.wait())\n"
        "asyncio.run(main())\n"
    ),
    "main.js": (
        "const { Worker } = require('worker_threads');\n"
        "const { execFileSync } = require('child_process');\n"
        "const fs = require('fs');\n"
        "fs.promises.writeFile('/tmp/x', 'io').then(async () => {\n"
        "  console.log(await fs.promises.readFile('/tmp/x', 'utf8'));\n"
        "  console.log(execFileSync('echo', ['spawned']).toString().trim());\n"
        "  new Worker('require(\"worker_threads\").parentPort.postMessage(7)', { eval: true })\n"
        "    .on('message', (m) => console.log('worker', m));\n"
        "});\n"
    ),
    "main.go": (
        "package main\n"
        'import ("fmt"; "os/exec"; "sync")\n'
        "func main() {\n"
        "  var wg sync.WaitGroup; n := 0; var mu sync.Mutex\n"
        "  for i := 0; i < 8; i++ {\n"
        "    wg.Add(1); go func() { mu.Lock(); n++; mu.Unlock(); wg.Done() }()\n"
        "  }\n"
        '  wg.Wait(); out, err := exec.Command("echo", "exec").Output()\n'
        '  fmt.Println("goroutines", n, string(out), err)\n'
        "}\n"
    ),
}


@live
@pytest.mark.timeout(180)
async def test_ordinary_programs_still_work(local: LocalSandboxBackend) -> None:
    """Python, Node (libuv falls back from io_uring) and a Go build under the filter."""
    info = await local.create(SandboxSpec(limits=Limits(memory_mb=1024, max_processes=128)))
    for name, source in PROGRAMS.items():
        await local.write_file(info.id, name, source.encode())
    py = await run(local, info.id, ["python3", "threads.py"], timeout_s=60)
    assert py.stdout.decode().split() == ["thread", "child", "3", "async", "0"], py.stderr
    if shutil.which("node"):
        js = await run(local, info.id, ["node", "main.js"], timeout_s=60)
        assert js.stdout.decode().split() == ["io", "spawned", "worker", "7"], js.stderr
    if shutil.which("go"):
        go = await run(local, info.id, "go build -o app main.go && ./app", timeout_s=150)
        assert go.stdout.decode().split() == ["goroutines", "8", "exec", "<nil>"], go.stderr
    await local.terminate(info.id)


@live
@pytest.mark.timeout(60)
async def test_commands_and_terminals_run_under_the_filter(local: LocalSandboxBackend) -> None:
    info = await local.create(SandboxSpec())
    status = "sed -n 's/^Seccomp:[[:space:]]*/mode-/p' /proc/self/status"
    result = await run(local, info.id, status, timeout_s=30)
    assert result.stdout == b"mode-2\n"
    pty = await local.open_pty(info.id, command=["sh", "-c", status])
    seen = b""
    async for chunk in pty.output():
        seen += chunk
    assert b"mode-2" in seen
    await pty.wait()
    await local.terminate(info.id)
