"""The workspace disk quota of the local backend.

RLIMIT_FSIZE bounds one file; nothing in the kernel bounds the total a uid
writes to a directory without filesystem quotas (which we cannot assume), and
a loop-mounted image per sandbox would make create slow and need root mounts.
So a watchdog measures workspace + home while the sandbox has processes
running and kills them when the total is over the quota.  The overshoot is
what a sandbox can write in one check interval.

Once over quota, a sandbox may still run commands (to delete files), but
nothing may grow: any growth above the lowest usage seen since it went over
kills its processes again.  Past the file-count limit every check kills, as
counting itself is what that limit protects.
"""

from __future__ import annotations

from dataclasses import dataclass

from modal_app.local.listing import disk_usage

_MB = 1024 * 1024
# Slack for what an interactive shell writes on its own (history, caches).
_GROWTH_SLACK = 256 * 1024


@dataclass
class QuotaState:
    """Per sandbox: the lowest usage seen since it went over quota (None: under)."""

    floor: int | None = None


@dataclass(frozen=True, slots=True)
class DiskQuota:
    max_bytes: int
    max_inodes: int

    def measure(self, paths: list[str]) -> tuple[int, int]:
        return disk_usage(paths, max_inodes=2 * self.max_inodes)

    def verdict(self, state: QuotaState, used: int, inodes: int) -> str | None:
        """A message when the sandbox's processes must be killed, else None."""
        if used <= self.max_bytes and inodes <= self.max_inodes:
            state.floor = None
            return None
        if inodes <= self.max_inodes and state.floor is not None:
            state.floor = min(state.floor, used)
            if used <= state.floor + _GROWTH_SLACK:
                return None  # over, but shrinking or idle: let the candidate clean up
        state.floor = used if state.floor is None else min(state.floor, used)
        return (
            f"\n[sandbox: workspace disk quota exceeded ({used // _MB} MB, {inodes} files; "
            f"limit {self.max_bytes // _MB} MB, {self.max_inodes} files): processes killed; "
            "delete files to continue]\n"
        )

    def rebase(self, state: QuotaState, used: int) -> None:
        """Record the usage measured once the killed processes are gone."""
        if state.floor is not None:
            state.floor = max(state.floor, used)
