"""POSIX shell snippets the Modal backend runs inside sandboxes.

Modal 1.6.4 has no RPC to signal an exec'd process or to resize a PTY (the
task command router offers exec start / stdin / stdio / poll / wait only), it
cannot apply per-command rlimits, and its filesystem API follows symlinks.  So
every command is started through ``exec_wrapper_argv``, a tiny ``sh``
prologue that records the command's pid (and, for a PTY, its tty) in a state
file, applies the ``Limits`` with ``ulimit`` and then ``exec``s the command, so
the pid is the command's own.  A Modal container runs everything as root, so
the prologue also drops privileges (``setpriv``): candidate commands and
terminals run as ``CANDIDATE_UID``, the agent as ``AGENT_UID`` -- a different
uid, so the candidate cannot read the agent's ``/proc/<pid>/environ`` (its API
token) and a non-dumpable process means something again.  The helpers (kill,
resize, guard) and the filesystem API stay root.  Killing, resizing and the symlink check are
then ordinary commands run next to it.

Everything here is pure (argv lists built from strings) and the scripts use
only POSIX sh, ``/proc``, ``kill``, ``stty``, ``tty`` and ``readlink -f``
(present in Debian and in busybox), so the tests run them on the host against
real processes and directories.
"""

from __future__ import annotations

from collections.abc import Sequence

from modal_app.base import WORKSPACE, Limits

# Made by root's first command; the wrapper refuses it if anyone else owns it.
STATE_DIR = "/tmp/.interviewlm"  # noqa: S108
GUARD_ESCAPES = 3
GUARD_SYMLINK = 4

CANDIDATE_UID = 1000
"""Candidate commands, terminals and non-private harness steps run as this uid."""
AGENT_UID = 1001
"""The Claude agent's commands (the ones granted network) run as this uid."""
SHARED_GID = 1000
"""Both roles' group: the workspace is group-writable, so each edits the other's files."""

_EXEC_WRAPPER = r"""
state=$1 nofile=$2 fsize=$3 nproc=$4 cpu=$5 cols=$6 rows=$7 uid=$8 gid=$9
shift 9
export INTERVIEWLM_EXEC="${state##*/}"
dir=${state%/*}
mkdir -p "$dir" 2>/dev/null
# Other uids share /tmp now: the state (which the root kill helper trusts)
# must be in a directory no one else could have made or swapped.
if [ -L "$dir" ] || [ "$(stat -c %u "$dir" 2>/dev/null)" != "$(id -u)" ]; then
  echo "interviewlm: $dir is not ours" >&2
  exit 126
fi
{
  echo $$ >"$state"
  if [ "$cols" != 0 ]; then
    stty cols "$cols" rows "$rows"
    # Recorded after the initial size, so a resize (which waits for this
    # line) can never be undone by it.
    tty >>"$state"
    export TERM="${TERM:-xterm-256color}"
  fi
  [ "$nofile" = 0 ] || ulimit -n "$nofile"
  [ "$fsize" = 0 ] || ulimit -f "$fsize"
  [ "$cpu" = 0 ] || ulimit -t "$cpu"
  [ "$nproc" = 0 ] || ulimit -u "$nproc" || ulimit -p "$nproc"
} 2>/dev/null
[ "$uid" = - ] && exec "$@"
{
  # Once per container (the marker is in root's state dir, on its /tmp):
  # the workspace as the Volume brought it becomes the candidate's,
  # group-writable for the agent.  Later API writes are handed over one by one.
  if [ ! -e "$dir/.workspace-owned" ]; then
    chown -R CANDIDATE:GROUP WORKSPACE && chmod -R ug+rwX WORKSPACE && : >"$dir/.workspace-owned"
  fi
  [ "$cols" = 0 ] || chown "$uid" "$(tty)"
  home="${state%/*}/home-$uid"
  mkdir -p "$home" && chown "$uid:$gid" "$home" && chmod 700 "$home"
} 2>/dev/null
if ! command -v setpriv >/dev/null 2>&1; then
  echo "interviewlm: this image has no setpriv (util-linux); refusing to run as root" >&2
  exit 126
fi
export HOME="$home"
umask 002
exec setpriv --reuid "$uid" --regid "$gid" --clear-groups --inh-caps=-all -- "$@"
"""

_EXEC_WRAPPER = (
    _EXEC_WRAPPER.replace("WORKSPACE", WORKSPACE)
    .replace("CANDIDATE", str(CANDIDATE_UID))
    .replace("GROUP", str(SHARED_GID))
)

# The victims are the recorded process and its descendants, plus every
# process carrying the command's INTERVIEWLM_EXEC marker in its environment:
# a child whose parent already died has been reparented out of the tree, but
# keeps the marker.  Freeze them all with SIGSTOP first (three rounds catch
# children forked meanwhile), then SIGKILL: killing parents first would
# reparent their children mid-walk.
_KILL_TREE = r"""
state=$1
id=${state##*/}
i=0
while [ ! -s "$state" ] && [ "$i" -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
root=
{ read -r root <"$state"; } 2>/dev/null
case $root in *[!0-9]*) root= ;; esac
[ -n "$root" ] || exit 0
marker="INTERVIEWLM_EXEC=$id"
if printf 'x\0' | grep -qzx x 2>/dev/null; then zgrep=1; else zgrep=0; fi
marked() {
  if [ "$zgrep" = 1 ]; then
    grep -lzx "$marker" /proc/[0-9]*/environ 2>/dev/null
  else
    for f in /proc/[0-9]*/environ; do
      { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qx "$marker" && echo "$f"
    done
  fi
}
victims() {
  pairs=
  for f in /proc/[0-9]*/stat; do
    s=
    { IFS= read -r s <"$f"; } 2>/dev/null || continue
    p=${f#/proc/}
    p=${p%/stat}
    set -- ${s##*') '}
    pairs="$pairs $p:$2"
  done
  found=" "
  kill -0 "$root" 2>/dev/null && found=" $root "
  for f in $(marked); do
    p=${f#/proc/}
    p=${p%/environ}
    [ "$p" = "$$" ] || found="$found$p "
  done
  changed=1
  while [ "$changed" = 1 ]; do
    changed=0
    for pr in $pairs; do
      c=${pr%%:*}
      case $found in *" $c "*) continue ;; esac
      case $found in *" ${pr#*:} "*) found="$found$c " changed=1 ;; esac
    done
  done
  echo $found
}
for n in 1 2 3; do
  v=$(victims)
  [ -n "$v" ] || exit 0
  kill -s STOP $v 2>/dev/null
done
kill -s KILL $(victims) 2>/dev/null
exit 0
"""

# A resize right after the terminal opens waits (3 s, as the kill does) for
# the wrapper to record the tty; exit 2 when there is none (not applied).
_RESIZE = r"""
i=0
while :; do
  tty=
  { read -r pid; read -r tty; } <"$1" 2>/dev/null
  [ -z "$tty" ] && [ "$i" -lt 30 ] || break
  sleep 0.1
  i=$((i + 1))
done
[ -n "$tty" ] || exit 2
stty -F "$tty" cols "$2" rows "$3" 2>/dev/null || stty cols "$2" rows "$3" <"$tty"
"""

# Resolve the deepest existing ancestor of the target (or the target itself
# when it exists) through every symlink, and refuse anything that lands
# outside the workspace.  With follow=0 the last component is not resolved,
# so a symlink itself can be stat'ed or deleted; exit 4 then says "it is a
# symlink" (so a delete removes the link, never what it points to).
_GUARD = r"""
t=$1 follow=$2 root=$3
[ "$follow" = 1 ] || t=${t%/*}
p=$t
while [ -n "$p" ] && [ ! -e "$p" ] && [ ! -L "$p" ]; do p=${p%/*}; done
[ -n "$p" ] || exit 3
r=$(readlink -f -- "$p") || exit 3
case $r in "$root" | "$root"/*) ;; *) exit 3 ;; esac
[ "$follow" = 1 ] || [ ! -L "$1" ] || exit 4
exit 0
"""


# After a root write through Modal's filesystem API: the file (and the
# directories above it, up to the workspace) become the candidate's.  Links
# are skipped (-h, and nothing is followed), as are files with other hard
# links (a swapped-in link to a root file elsewhere must not change owner).
_HANDOVER = r"""
status=0
for p; do
  [ -L "$p" ] && continue
  [ -d "$p" ] || [ "$(stat -c %h -- "$p")" = 1 ] || continue
  chown -h CANDIDATE:GROUP -- "$p" && chmod ug+rwX -- "$p" || status=1
done
exit $status
""".replace("CANDIDATE", str(CANDIDATE_UID)).replace("GROUP", str(SHARED_GID))


def handover_argv(paths: Sequence[str]) -> list[str]:
    """Give ``paths`` (absolute, inside the workspace) to the candidate's uid and group."""
    return ["sh", "-c", _HANDOVER, "interviewlm-handover", *paths]


def exec_wrapper_argv(
    argv: Sequence[str],
    *,
    state_path: str,
    limits: Limits | None,
    pty_size: tuple[int, int] | None = None,
    run_as: int | None = CANDIDATE_UID,
) -> list[str]:
    """``argv`` started through the prologue that records its pid and applies ``limits``.

    ``pty_size`` is (cols, rows) for a PTY session: the tty is recorded too and
    the terminal is sized before the command starts.  ``run_as``: the uid the
    command runs as (group ``SHARED_GID``, no capabilities); None keeps root,
    only for the private launcher, which drops privileges itself.
    """
    nofile = fsize_blocks = nproc = cpu = 0
    if limits is not None:
        nofile = limits.max_open_files
        # POSIX ``ulimit -f`` counts 512-byte blocks (bash too when run as sh).
        fsize_blocks = limits.max_file_size_mb * 2048
        nproc = limits.max_processes
        cpu = limits.cpu_seconds
    cols, rows = pty_size if pty_size is not None else (0, 0)
    numbers = (nofile, fsize_blocks, nproc, cpu, cols, rows)
    return [
        "sh",
        "-c",
        _EXEC_WRAPPER,
        "interviewlm-exec",
        state_path,
        *(str(max(0, int(n))) for n in numbers),
        "-" if run_as is None else str(run_as),
        str(SHARED_GID),
        *argv,
    ]


def kill_tree_argv(state_path: str) -> list[str]:
    """SIGKILL the process recorded in ``state_path`` and all its descendants."""
    return ["sh", "-c", _KILL_TREE, "interviewlm-kill", state_path]


def resize_argv(state_path: str, cols: int, rows: int) -> list[str]:
    """Set the window size of the PTY recorded in ``state_path`` (SIGWINCH follows)."""
    return ["sh", "-c", _RESIZE, "interviewlm-resize", state_path, str(cols), str(rows)]


def guard_argv(absolute_path: str, *, follow_last: bool, root: str = WORKSPACE) -> list[str]:
    """Exit 0 when ``absolute_path`` resolves inside ``root``, ``GUARD_ESCAPES`` when not.

    Without ``follow_last``, a path that is itself a symlink (inside) exits
    ``GUARD_SYMLINK``.
    """
    return [
        "sh",
        "-c",
        _GUARD,
        "interviewlm-guard",
        absolute_path,
        "1" if follow_last else "0",
        root,
    ]
