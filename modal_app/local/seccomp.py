"""The seccomp filter of every sandboxed process, as a classic BPF program for bwrap.

bwrap installs it (``--seccomp FD``) right before it execs the sandbox's
command, so it covers commands, terminals, test runs and the agent alike, and
everything they fork (filters are inherited and can never be removed).

Policy: allow by default, deny what a candidate's program never needs and what
is kernel attack surface or reaches outside the sandbox — io_uring, bpf,
kernel keyrings, every mount API, ptrace and cross-process memory access,
kernel modules, kexec, setting clocks, new namespaces (``unshare``/``clone``
with any ``CLONE_NEW*`` flag, ``setns``), perf events, userfaultfd, swap,
reboot, acct, quotas, file handles (``open_by_handle_at`` is a classic
container escape), ASLR-weakening ``personality`` flags, the terminal
injection ioctls ``TIOCSTI``/``TIOCLINUX`` and line-discipline changes
(``TIOCSETD``: loads rarely used, historically exploitable tty code).  Sockets
are limited to the families programs use (unix, IPv4, IPv6, netlink): the
others (AF_ALG, AF_TIPC, AF_VSOCK, ...) are kernel code a candidate never
needs, and fail with EAFNOSUPPORT as on a kernel without them.  Denied calls
fail with EPERM so programs fail cleanly instead of being killed; ``clone3``
fails with ENOSYS because its flags sit in memory a filter cannot read, and
glibc then falls back to ``clone``, whose flags are checked.

Architecture: the program checks ``seccomp_data.arch`` first.  x86_64 and
aarch64 have their own syscall tables (numbers copied from the kernel's
``asm/unistd_64.h`` and ``asm-generic/unistd.h``; tests/sandbox/test_seccomp.py
re-checks them against the installed headers).  Any other arch — i386 via
``int 0x80`` on an x86_64 kernel — and x32 syscalls (bit 30 of the number)
kill the process: they would bypass a table keyed on x86_64 numbers.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

# struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6] (little endian:
# the low 32 bits of args[i] are at 16 + 8 * i).
_NR = 0
_ARCH = 4
_ARG0_LO = 16
_ARG1_LO = 24

# <linux/sched.h>.  CLONE_NEWTIME (0x80) only exists for unshare/clone3: in
# clone()'s flags the low byte is the exit signal.
_CLONE_NS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
_CLONE_NS |= 0x40000000
_UNSHARE_NS = _CLONE_NS | 0x00000080
# <linux/personality.h>: ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
# READ_IMPLIES_EXEC — the flags the kernel itself clears on setuid exec
# (PER_CLEAR_ON_SETID).  0xffffffff only queries the current persona.
_PERSONALITY_WEAKENING = 0x0040000 | 0x0100000 | 0x0200000 | 0x0400000
_PERSONALITY_QUERY = 0xFFFFFFFF
# <asm-generic/ioctls.h> (same numbers on x86_64 and aarch64); ioctl's cmd is
# an unsigned int, so the low half of args[1] is what the kernel uses.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TIOCSETD = 0x5423
# <bits/socket.h>: PF_LOCAL, PF_INET, PF_INET6, PF_NETLINK.
SOCKET_FAMILIES = (1, 2, 10, 16)

DENIED: tuple[str, ...] = (
    # io_uring: its own syscall surface, bypasses per-syscall filtering.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    # mounts, old and new API
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "move_pages",
    "migrate_pages",
    # kernel, hardware, host-wide state
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "clock_settime",
    "settimeofday",
    "adjtimex",
    "clock_adjtime",
    "setns",
    "perf_event_open",
    "userfaultfd",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "name_to_handle_at",
    "open_by_handle_at",
    "lookup_dcookie",
    "syslog",
    "sethostname",
    "setdomainname",
    "vhangup",
    "nfsservctl",
    "fanotify_init",
    # x86_64 only: port I/O, LDT, long-gone module and sysctl calls
    "iopl",
    "ioperm",
    "modify_ldt",
    "uselib",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
)
NOT_IMPLEMENTED: tuple[str, ...] = ("clone3",)
_CHECKED = ("clone", "unshare", "personality", "ioctl", "socket", "socketpair")

X86_64: Mapping[str, int] = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "bpf": 321, "keyctl": 250, "add_key": 248, "request_key": 249,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "process_madvise": 440, "pidfd_getfd": 438, "kcmp": 312,
    "move_pages": 279, "migrate_pages": 256,
    "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320,
    "clock_settime": 227, "settimeofday": 164, "adjtimex": 159, "clock_adjtime": 305,
    "setns": 308, "perf_event_open": 298, "userfaultfd": 323,
    "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163,
    "quotactl": 179, "quotactl_fd": 443,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "lookup_dcookie": 212,
    "syslog": 103, "sethostname": 170, "setdomainname": 171, "vhangup": 153,
    "nfsservctl": 180, "fanotify_init": 300,
    "iopl": 172, "ioperm": 173, "modify_ldt": 154, "uselib": 134, "_sysctl": 156,
    "create_module": 174, "get_kernel_syms": 177, "query_module": 178,
    "clone3": 435, "clone": 56, "unshare": 272, "personality": 135, "ioctl": 16,
    "socket": 41, "socketpair": 53,
}  # fmt: skip
"""x86_64 numbers, from /usr/include/x86_64-linux-gnu/asm/unistd_64.h."""

AARCH64: Mapping[str, int] = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "bpf": 280, "keyctl": 219, "add_key": 217, "request_key": 218,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
    "process_madvise": 440, "pidfd_getfd": 438, "kcmp": 272,
    "move_pages": 239, "migrate_pages": 238,
    "init_module": 105, "finit_module": 273, "delete_module": 106,
    "kexec_load": 104, "kexec_file_load": 294,
    "clock_settime": 112, "settimeofday": 170, "adjtimex": 171, "clock_adjtime": 266,
    "setns": 268, "perf_event_open": 241, "userfaultfd": 282,
    "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89,
    "quotactl": 60, "quotactl_fd": 443,
    "name_to_handle_at": 264, "open_by_handle_at": 265, "lookup_dcookie": 18,
    "syslog": 116, "sethostname": 161, "setdomainname": 162, "vhangup": 58,
    "nfsservctl": 42, "fanotify_init": 262,
    "clone3": 435, "clone": 220, "unshare": 97, "personality": 92, "ioctl": 29,
    "socket": 198, "socketpair": 199,
}  # fmt: skip
"""aarch64 numbers, from /usr/include/asm-generic/unistd.h (no iopl & co. there)."""

ARCHES: Mapping[int, Mapping[str, int]] = {AUDIT_ARCH_X86_64: X86_64, AUDIT_ARCH_AARCH64: AARCH64}


@dataclass(frozen=True, slots=True)
class _Insn:
    code: int
    k: int
    jt: str | None = None
    jf: str | None = None


class _Assembler:
    """Straight-line classic BPF with forward jumps to named labels."""

    def __init__(self) -> None:
        self.code: list[_Insn] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        self.code.append(_Insn(_LD_W_ABS, offset))

    def jump(self, op: int, k: int, jt: str | None, jf: str | None = None) -> None:
        self.code.append(_Insn(op, k, jt, jf))

    def ret(self, value: int) -> None:
        self.code.append(_Insn(_RET, value))

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, insn in enumerate(self.code):
            out += struct.pack(
                "=HBBI", insn.code, self._offset(pc, insn.jt), self._offset(pc, insn.jf), insn.k
            )
        return bytes(out)

    def _offset(self, pc: int, label: str | None) -> int:
        if label is None:
            return 0  # fall through
        offset = self.labels[label] - pc - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"jump to {label} out of range ({offset})")
        return offset


def _arch_block(asm: _Assembler, name: str, table: Mapping[str, int], *, x32: bool) -> None:
    asm.label(name)
    asm.load(_NR)
    if x32:
        asm.jump(_JGE, X32_SYSCALL_BIT, "kill")
    for syscall in DENIED:
        if syscall in table:
            asm.jump(_JEQ, table[syscall], "eperm")
    for syscall in NOT_IMPLEMENTED:
        asm.jump(_JEQ, table[syscall], "enosys")
    for syscall in _CHECKED:
        asm.jump(_JEQ, table[syscall], f"check_{syscall}")
    asm.ret(RET_ALLOW)


def build_filter() -> bytes:
    """The filter as bwrap's ``--seccomp`` wants it: packed ``struct sock_filter``s."""
    asm = _Assembler()
    asm.load(_ARCH)
    asm.jump(_JEQ, AUDIT_ARCH_X86_64, "x86_64")
    asm.jump(_JEQ, AUDIT_ARCH_AARCH64, "aarch64", "kill")
    _arch_block(asm, "x86_64", X86_64, x32=True)
    _arch_block(asm, "aarch64", AARCH64, x32=False)
    # Argument checks, shared: seccomp_data's layout is the same on both.
    asm.label("check_clone")
    asm.load(_ARG0_LO)
    asm.jump(_JSET, _CLONE_NS, "eperm")
    asm.ret(RET_ALLOW)
    asm.label("check_unshare")
    asm.load(_ARG0_LO)
    asm.jump(_JSET, _UNSHARE_NS, "eperm")
    asm.ret(RET_ALLOW)
    asm.label("check_personality")
    asm.load(_ARG0_LO)
    asm.jump(_JEQ, _PERSONALITY_QUERY, "allow")
    asm.jump(_JSET, _PERSONALITY_WEAKENING, "eperm")
    asm.ret(RET_ALLOW)
    asm.label("check_ioctl")
    asm.load(_ARG1_LO)
    asm.jump(_JEQ, TIOCSTI, "eperm")
    asm.jump(_JEQ, TIOCLINUX, "eperm")
    asm.jump(_JEQ, TIOCSETD, "eperm")
    asm.ret(RET_ALLOW)
    asm.label("check_socket")
    asm.label("check_socketpair")
    asm.load(_ARG0_LO)
    for family in SOCKET_FAMILIES:
        asm.jump(_JEQ, family, "allow")
    asm.ret(RET_ERRNO | EAFNOSUPPORT)
    asm.label("allow")
    asm.ret(RET_ALLOW)
    asm.label("eperm")
    asm.ret(RET_ERRNO | EPERM)
    asm.label("enosys")
    asm.ret(RET_ERRNO | ENOSYS)
    asm.label("kill")
    asm.ret(RET_KILL_PROCESS)
    return asm.assemble()


FILTER: bytes = build_filter()
