"""Tests of the Modal backend that need no Modal account, plus a live smoke test.

Everything up to the SDK boundary is tested for real: path validation, the
exception mapping (on the SDK's own exception classes), image recipes and
the spec -> ``Sandbox.create`` translation (real, lazy ``modal`` objects;
an audit hook proves no socket is opened), and the in-sandbox shell
snippets, run here against real processes, directories and a real PTY.

Only two tests stand in for Modal's ``ContainerProcess`` (it cannot be reached
from CI); each says so and imitates nothing but that outermost object.

The live smoke test runs twice: against ``tests.modal_standin`` (a
protocol-level stand-in for Modal's API; real SDK, client side only, never
skips) and against Modal when MODAL_TOKEN_ID / MODAL_TOKEN_SECRET are set
(skipping with that reason otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import modal
import modal.exception as mx
import pytest
from modal._utils.async_utils import synchronizer
from modal._utils.name_utils import is_valid_object_name, is_valid_tag

from modal_app import base
from modal_app.base import (
    WORKSPACE,
    BackendUnavailable,
    ExecTimeout,
    FileNotFoundInSandbox,
    FileTooLarge,
    ImageSpec,
    InvalidPath,
    InvalidSpec,
    Language,
    Limits,
    NetworkPolicy,
    QuotaExceeded,
    SandboxBackend,
    SandboxError,
    SandboxFileError,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
)
from modal_app.modal.backend import ModalSandboxBackend
from modal_app.modal.errors import map_modal_error, translate_errors
from modal_app.modal.files import entry_from_info, entry_from_volume
from modal_app.modal.images import (
    CLAUDE_CODE_VERSION,
    GO_VERSION,
    NODE_VERSION,
    TYPESCRIPT_VERSION,
    ImageCatalog,
    language_image,
    spec_image,
)
from modal_app.modal.process import ModalExecHandle, ProcessContext, _drain
from modal_app.modal.refs import status_from_returncode
from modal_app.modal.shell import (
    CANDIDATE_UID,
    GUARD_ESCAPES,
    GUARD_SYMLINK,
    exec_wrapper_argv,
    guard_argv,
    handover_argv,
    kill_tree_argv,
    resize_argv,
)
from modal_app.modal.spec import (
    MAX_TIMEOUT_S,
    RESERVED_TAGS,
    TAG_CREATED,
    TAG_LIMITS,
    TAG_VOLUME,
    BucketMount,
    ModalOptions,
    app_name,
    decode_limits,
    encode_limits,
    object_name,
    sandbox_create_args,
    user_tags,
)
from modal_app.paths import normalize_workspace_path, workspace_abspath

CREDENTIALS = (os.environ.get("MODAL_TOKEN_ID"), os.environ.get("MODAL_TOKEN_SECRET"))

# -- no network, proven ------------------------------------------------------------

_NETWORK_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname"}
_offline = {"active": False}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _offline["active"] and event in _NETWORK_EVENTS:
        raise AssertionError(f"network access during an offline step: {event} {args!r}")


# Audit hooks see every connect / name lookup in the process, whichever
# library (grpclib, aiohttp) would make it.
sys.addaudithook(_audit)


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Fail the test if the block opens a connection or resolves a name."""
    _offline["active"] = True
    try:
        yield
    finally:
        _offline["active"] = False


def test_the_no_network_guard_works() -> None:
    import socket

    with no_network(), pytest.raises(AssertionError, match=r"socket\.getaddrinfo"):
        socket.getaddrinfo("localhost", 80)


# -- paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        (".", ""),
        ("/workspace", ""),
        ("/workspace/", ""),
        ("main.py", "main.py"),
        ("./src//pkg/./mod.py", "src/pkg/mod.py"),
        ("/workspace/src/main.go", "src/main.go"),
        ("dir/", "dir"),
        ("sp ace/ünï.txt", "sp ace/ünï.txt"),
    ],
)
def test_normalize_workspace_path_accepts(given: str, expected: str) -> None:
    assert normalize_workspace_path(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "..",
        "../etc/passwd",
        "a/../../b",
        "a/..",
        "/workspace/../etc",
        "/etc/passwd",
        "/workspacex/a",
        "/",
        "a\x00b",
        "x" * 256,
        "a/" * 2100,
    ],
)
def test_normalize_workspace_path_refuses(given: str) -> None:
    with pytest.raises(InvalidPath):
        normalize_workspace_path(given)


def test_workspace_abspath() -> None:
    assert workspace_abspath("") == WORKSPACE
    assert workspace_abspath("a/b") == "/workspace/a/b"


# -- error mapping -------------------------------------------------------------


@pytest.mark.parametrize(
    ("modal_error", "ours"),
    [
        (mx.NotFoundError, SandboxNotFound),
        (mx.SandboxTerminatedError, SandboxTerminated),
        (mx.SandboxTimeoutError, SandboxTerminated),
        (mx.ConflictError, SandboxError),  # a failed precondition; refs.on_sandbox polls
        (mx.ExecTimeoutError, ExecTimeout),
        (mx.ResourceExhaustedError, QuotaExceeded),
        (mx.InvalidError, InvalidSpec),
        (mx.AlreadyExistsError, InvalidSpec),
        (mx.UnimplementedError, InvalidSpec),
        (mx.AuthError, BackendUnavailable),
        (mx.PermissionDeniedError, BackendUnavailable),
        (mx.ConnectionError, BackendUnavailable),
        (mx.ServiceError, BackendUnavailable),
        (mx.InternalError, BackendUnavailable),
        (mx.InternalFailure, BackendUnavailable),
        (mx.DataLossError, BackendUnavailable),
        (mx.VersionError, BackendUnavailable),
        (mx.ClientClosed, BackendUnavailable),
        (mx.RemoteError, BackendUnavailable),
        (mx.ExecutionError, BackendUnavailable),
        (mx.TimeoutError, BackendUnavailable),
        (mx.FunctionTimeoutError, BackendUnavailable),
        (mx.SandboxFilesystemNotFoundError, FileNotFoundInSandbox),
        (mx.SandboxFilesystemFileTooLargeError, FileTooLarge),
        (mx.SandboxFilesystemIsADirectoryError, InvalidPath),
        (mx.SandboxFilesystemNotADirectoryError, InvalidPath),
        (mx.SandboxFilesystemPathAlreadyExistsError, InvalidPath),
        (mx.SandboxFilesystemPermissionError, SandboxFileError),
        (mx.SandboxFilesystemDirectoryNotEmptyError, SandboxFileError),
        (mx.SandboxFilesystemError, SandboxFileError),
        (mx.Error, SandboxError),
        (FileNotFoundError, FileNotFoundInSandbox),
        (TimeoutError, BackendUnavailable),
        (ConnectionError, BackendUnavailable),  # the router client's, for a worker gone
    ],
)
def test_modal_errors_map_onto_ours(modal_error: type[Exception], ours: type[SandboxError]) -> None:
    mapped = map_modal_error(modal_error("boom"))
    assert type(mapped) is ours
    assert "boom" in str(mapped)


def test_image_build_error_is_a_bad_spec() -> None:
    assert type(map_modal_error(mx.ImageBuildError("no such base", "im-123"))) is InvalidSpec


def test_not_found_means_a_file_for_volume_calls() -> None:
    mapped = map_modal_error(mx.NotFoundError("gone"), not_found=FileNotFoundInSandbox)
    assert type(mapped) is FileNotFoundInSandbox


def test_foreign_exceptions_are_not_mapped() -> None:
    assert map_modal_error(ValueError("x")) is None
    ours = SandboxTerminated("already ours")
    assert map_modal_error(ours) is ours


def test_translate_errors_chains_and_passes_the_rest_through() -> None:
    original = mx.AuthError("bad token")
    with pytest.raises(BackendUnavailable) as caught, translate_errors():
        raise original
    assert caught.value.__cause__ is original
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("not modal's")


# -- images --------------------------------------------------------------------


@pytest.mark.parametrize("language", list(Language))
def test_language_images_are_lazy_modal_images(language: Language) -> None:
    with no_network():
        image = language_image(language)
    assert isinstance(image, modal.Image)
    assert not image._is_hydrated  # nothing built or looked up yet


def test_image_catalog_memoizes_and_shares_the_node_image() -> None:
    catalog = ImageCatalog()
    with no_network():
        python = catalog.image_for(Language.PYTHON, None)
        assert catalog.image_for(None, None) is python  # the default preset
        assert catalog.image_for(Language.TYPESCRIPT, None) is catalog.image_for(
            Language.JAVASCRIPT, None
        )
        assert catalog.image_for(Language.GO, None) is not python


def test_image_spec_becomes_a_registry_image() -> None:
    spec = ImageSpec("python:3.12-slim-bookworm", ("RUN pip install numpy==2.1.0", "ENV A=1"))
    with no_network():
        image = spec_image(spec)
        assert ImageCatalog().image_for(None, spec) is not None
    assert isinstance(image, modal.Image)
    assert not image._is_hydrated


@pytest.mark.parametrize(
    "spec",
    [
        ImageSpec("python:3.12", ("COPY . /app",)),
        ImageSpec("python:3.12", ("FROM alpine",)),
        ImageSpec("python:3.12", ("pip install numpy",)),
        ImageSpec("python:3.12", ("RUN echo a\nRUN echo b",)),
        ImageSpec("python:3.12", ("",)),
        ImageSpec("", ()),
        ImageSpec("not an image", ()),
    ],
)
def test_bad_image_specs_are_refused(spec: ImageSpec) -> None:
    with pytest.raises(InvalidSpec):
        spec_image(spec)


def test_language_and_image_spec_together_are_refused() -> None:
    with pytest.raises(InvalidSpec):
        ImageCatalog().image_for(Language.GO, ImageSpec("golang:1.25"))


def test_image_pins_are_exact_versions() -> None:
    for version in (NODE_VERSION, GO_VERSION, TYPESCRIPT_VERSION, CLAUDE_CODE_VERSION):
        assert all(part.isdigit() for part in version.split("."))


# -- spec -> Sandbox.create ------------------------------------------------------

PREFIX = "ilm-test"


def create_args(spec: SandboxSpec, **options: Any) -> Any:
    with no_network():
        return sandbox_create_args(
            spec,
            image=language_image(Language.PYTHON),
            prefix=PREFIX,
            options=ModalOptions(**options),
            client=None,
            now=1_700_000_000.5,
            workspace_key="fixed",
        )


def test_default_spec_translation() -> None:
    args = create_args(SandboxSpec(tags={"account": "acc1", "session": "s1"}))
    # Blocked = an allowlist of nothing (replaceable for the agent's widening; issue 14 item 1).
    assert args.block_network is False
    assert args.outbound_cidr_allowlist == []
    assert args.outbound_domain_allowlist == []
    assert args.timeout == 3600
    assert args.idle_timeout is None
    assert args.cpu == (1.0, 1.0)
    assert args.memory == (512, 512)
    assert args.workdir == WORKSPACE
    assert args.app_name == "ilm-test-acc1"
    assert args.volume_name == "ilm-test-ws-s1"
    assert list(args.volumes) == [WORKSPACE]
    assert isinstance(args.volumes[WORKSPACE], modal.Volume)
    assert args.entrypoint[0] == "sleep"
    assert int(args.entrypoint[1]) > args.timeout
    assert args.env == {"NODE_OPTIONS": "--max-old-space-size=384"}
    assert args.tags["account"] == "acc1"
    assert args.tags[TAG_VOLUME] == "ilm-test-ws-s1"
    assert args.tags[TAG_CREATED] == "1700000000"
    assert decode_limits(args.tags[TAG_LIMITS]) == Limits()
    assert all(is_valid_tag(k, 63) and is_valid_tag(v, 63) for k, v in args.tags.items())
    assert user_tags(args.tags) == {"account": "acc1", "session": "s1"}


def test_full_spec_translation() -> None:
    spec = SandboxSpec(
        language=Language.GO,
        env={"FOO": "bar", "NODE_OPTIONS": "--max-old-space-size=64"},
        workdir="src",
        volume="shared-ws",
        limits=Limits(cpu=2.0, memory_mb=2048, max_file_size_mb=8),
        timeout_s=90.2,
        idle_timeout_s=300,
        tags={"account": "a", "session": "s"},
        network=NetworkPolicy(("api.anthropic.com", "*.npmjs.org", "10.0.0.0/8", "1.2.3.4")),
    )
    args = create_args(spec)
    assert args.timeout == 91  # rounded up, never cut short
    assert args.idle_timeout == 300
    assert args.cpu == (2.0, 2.0)
    assert args.memory == (2048, 2048)
    assert args.workdir == "/workspace/src"
    assert args.volume_name == "ilm-test-ws-shared-ws"
    assert args.block_network is False
    assert args.outbound_cidr_allowlist == ["10.0.0.0/8", "1.2.3.4/32"]
    assert args.outbound_domain_allowlist == ["api.anthropic.com", "*.npmjs.org"]
    assert args.env == {"NODE_OPTIONS": "--max-old-space-size=64", "FOO": "bar"}
    limits = decode_limits(args.tags[TAG_LIMITS])
    assert limits is not None
    assert limits.max_file_size_mb == 8


def test_workspace_volume_without_session_is_fresh() -> None:
    with no_network():
        one = sandbox_create_args(
            SandboxSpec(),
            image=language_image(Language.PYTHON),
            prefix=PREFIX,
            options=ModalOptions(),
            client=None,
            now=0,
        )
        two = sandbox_create_args(
            SandboxSpec(),
            image=language_image(Language.PYTHON),
            prefix=PREFIX,
            options=ModalOptions(),
            client=None,
            now=0,
        )
    assert one.volume_name != two.volume_name
    assert one.app_name == "ilm-test-default"


def test_bucket_mount_translation() -> None:
    bucket = BucketMount(
        bucket_name="interview-assets",
        secret_name="aws-assets",
        mount_path="/mnt/assets",
        key_prefix="accounts/{account}/",
    )
    args = create_args(SandboxSpec(tags={"account": "acc9"}), bucket=bucket)
    assert isinstance(args.volumes["/mnt/assets"], modal.CloudBucketMount)
    # The public wrapper hides the dataclass fields; read them on the SDK's own object.
    mount = synchronizer._translate_in(args.volumes["/mnt/assets"])
    assert mount.bucket_name == "interview-assets"
    assert mount.key_prefix == "accounts/acc9/"
    assert mount.read_only is True
    assert mount.secret is not None
    assert mount.secret._is_ephemeral is False  # a named Secret, hydrated at create time


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        (SandboxSpec(timeout_s=0), {}),
        (SandboxSpec(timeout_s=MAX_TIMEOUT_S + 1), {}),
        (SandboxSpec(timeout_s=float("inf")), {}),
        (SandboxSpec(idle_timeout_s=-1), {}),
        (SandboxSpec(limits=Limits(cpu=0)), {}),
        (SandboxSpec(limits=Limits(memory_mb=0)), {}),
        (SandboxSpec(env={"BAD-NAME": "x"}), {}),
        (SandboxSpec(env={"OK": "nul\x00"}), {}),
        (SandboxSpec(tags={"account": "has space"}), {}),
        (SandboxSpec(tags={TAG_VOLUME: "mine"}), {}),
        (SandboxSpec(network=NetworkPolicy(("not a host!",))), {}),
        (SandboxSpec(), {"bucket": BucketMount("b", key_prefix="no-slash")}),
        (SandboxSpec(), {"bucket": BucketMount("b", mount_path="/workspace")}),
        (SandboxSpec(), {"bucket": BucketMount("b", mount_path="relative")}),
    ],
)
def test_invalid_specs_are_refused(spec: SandboxSpec, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpec):
        create_args(spec, **options)


def test_workdir_outside_the_workspace_is_refused() -> None:
    with pytest.raises(InvalidPath):
        create_args(SandboxSpec(workdir="/etc"))


def test_reserved_tags_are_all_valid_modal_tags() -> None:
    assert all(is_valid_tag(key, 63) for key in RESERVED_TAGS)


@pytest.mark.parametrize(
    "parts",
    [
        ("interviewlm", "acc"),
        ("interviewlm", "ws", "0b8f9c1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
        ("interviewlm", "ws", "x" * 200),
        ("p", "with/slash and spaces ü"),
        ("", ""),
    ],
)
def test_object_names_are_valid_and_deterministic(parts: tuple[str, ...]) -> None:
    name = object_name(*parts)
    assert is_valid_object_name(name)
    assert len(name) <= 63
    assert name == object_name(*parts)


def test_object_names_stay_distinct() -> None:
    assert object_name("p", "a/b") != object_name("p", "a-b")
    assert object_name("p", "x" * 100 + "1") != object_name("p", "x" * 100 + "2")
    assert app_name("p", None) == "p-default"


def test_limits_tag_round_trip() -> None:
    limits = Limits(max_open_files=64, max_file_size_mb=3, max_processes=20, cpu_seconds=9)
    decoded = decode_limits(encode_limits(limits))
    assert decoded is not None
    assert (decoded.max_open_files, decoded.max_file_size_mb) == (64, 3)
    assert (decoded.max_processes, decoded.cpu_seconds) == (20, 9)
    assert decode_limits("garbage") is None
    assert decode_limits(None) is None


# -- values read back from Modal ---------------------------------------------------


def test_status_from_returncode() -> None:
    assert status_from_returncode(None) is SandboxStatus.RUNNING
    for code in (0, 124, 137):
        assert status_from_returncode(code) is SandboxStatus.TERMINATED
    assert status_from_returncode(127) is SandboxStatus.ERROR


def test_file_entries_from_sandbox_and_volume_listings() -> None:
    info = modal.types.FileInfo(
        name="main.py",
        path="/workspace/src/main.py",
        type=modal.types.FileType.FILE,
        size=12,
        mode=0o100644,
        permissions="rw-r--r--",
        owner="root",
        group="root",
        modified_time=1.5,
        symlink_target=None,
    )
    assert entry_from_info("src/main.py", info) == base.FileEntry("src/main.py", "file", 12, 1.5)
    volume_entry = modal.types.FileEntry(
        path="/src", type=modal.types.FileEntryType.DIRECTORY, mtime=7, size=0
    )
    assert entry_from_volume(volume_entry) == base.FileEntry("src", "dir", 0, 7.0)


# -- the backend without Modal ---------------------------------------------------


async def test_backend_satisfies_the_protocol_and_needs_credentials() -> None:
    backend = ModalSandboxBackend(token_id=None, token_secret="secret")
    assert isinstance(backend, SandboxBackend)
    assert backend.name == "modal"
    with pytest.raises(BackendUnavailable, match="MODAL_TOKEN_ID"):
        await backend.start()
    with pytest.raises(BackendUnavailable, match="not started"):
        await backend.create(SandboxSpec())
    with pytest.raises(BackendUnavailable):
        await backend.status("sb-123")
    await backend.aclose()


# -- shell snippets, run for real on this machine ------------------------------------


def test_exec_wrapper_records_pid_applies_limits_and_keeps_argv(tmp_path: Path) -> None:
    state = tmp_path / "state" / "cmd"
    limits = Limits(max_open_files=77, max_file_size_mb=3, cpu_seconds=42)
    script = 'ulimit -n; ulimit -f; ulimit -t; printf "%s|" "$@"; echo "pid=$$"'
    argv = exec_wrapper_argv(
        ["sh", "-c", script, "sh", "two words", "*", "$HOME"],
        state_path=str(state),
        limits=limits,
        run_as=None,  # on the host: the drop is proven in a root container (stand-in)
    )
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[:3] == ["77", str(3 * 2048), "42"]
    assert lines[3].startswith("two words|*|$HOME|")
    assert lines[3].endswith(f"pid={state.read_text().split()[0]}")  # exec kept the pid


def returncode(argv: list[str]) -> int:
    return subprocess.run(argv, check=False, capture_output=True, timeout=30).returncode


def test_exec_wrapper_passes_the_exit_code_and_missing_commands(tmp_path: Path) -> None:
    state = str(tmp_path / "s")
    assert (
        returncode(
            exec_wrapper_argv(["sh", "-c", "exit 7"], state_path=state, limits=None, run_as=None)
        )
        == 7
    )
    assert (
        returncode(
            exec_wrapper_argv(["no-such-command-xyz"], state_path=state, limits=None, run_as=None)
        )
        == 127
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(") ", 1)[1].split()[0] != "Z"
    return False


def test_kill_tree_kills_every_descendant(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pids = tmp_path / "pids"
    tree = (
        f"sleep 300 & echo $! >>{pids}; "
        f"(sleep 301 & echo $! >>{pids}; sleep 302 & echo $! >>{pids}; wait) & "
        f"sh -c 'sleep 303 & echo $! >>{pids}; wait' & "
        "wait"
    )
    argv = exec_wrapper_argv(["sh", "-c", tree], state_path=str(state), limits=None, run_as=None)
    root = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while not pids.exists() or len(pids.read_text().split()) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sleepers = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in sleepers)
        assert int(state.read_text().split()[0]) == root.pid
        subprocess.run(kill_tree_argv(str(state)), check=True, timeout=30)
        assert root.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in sleepers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in sleepers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            root.kill()
        root.wait()


@pytest.mark.parametrize("grep_z", [True, False], ids=["grep-z", "tr-fallback"])
def test_kill_tree_finds_orphans_by_their_marker(tmp_path: Path, grep_z: bool) -> None:
    """A child whose parent exited is reparented out of the tree; its marker still names it.

    Run both with GNU ``grep -z`` and with the ``tr`` fallback used where grep
    lacks -z (busybox images).
    """
    kill_argv = kill_tree_argv(str(tmp_path / "state"))
    if not grep_z:
        probe = "then zgrep=1; else zgrep=0; fi"
        assert probe in kill_argv[2]
        kill_argv[2] = kill_argv[2].replace(probe, "then zgrep=0; else zgrep=0; fi")
    state = tmp_path / "state"
    orphan_pid = tmp_path / "orphan"
    command = f"(sleep 300 & echo $! >{orphan_pid}) ; sleep 300"
    root = subprocess.Popen(
        exec_wrapper_argv(["sh", "-c", command], state_path=str(state), limits=None, run_as=None)
    )
    try:
        deadline = time.monotonic() + 10
        while not orphan_pid.exists() or not orphan_pid.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        orphan = int(orphan_pid.read_text())
        stat = Path(f"/proc/{orphan}/stat").read_text()
        assert int(stat.rsplit(") ", 1)[1].split()[1]) != root.pid, "reparented"
        subprocess.run(kill_argv, check=True, timeout=30, capture_output=True)
        root.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(orphan):
            assert time.monotonic() < deadline, "the orphan survived"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            root.kill()
        root.wait()


def test_kill_tree_of_a_finished_or_unknown_process_is_harmless(tmp_path: Path) -> None:
    state = tmp_path / "state"
    subprocess.run(
        exec_wrapper_argv(["true"], state_path=str(state), limits=None, run_as=None), check=True
    )
    assert returncode(kill_tree_argv(str(state))) == 0
    started = time.monotonic()
    assert returncode(kill_tree_argv(str(tmp_path / "never"))) == 0
    assert time.monotonic() - started < 10


def test_exec_wrapper_refuses_a_state_dir_someone_else_made(tmp_path: Path) -> None:
    """Candidate and agent share /tmp with root: a planted state dir would steer the kill helper."""
    planted = tmp_path / "planted"
    planted.mkdir()
    os.chown(planted, CANDIDATE_UID, CANDIDATE_UID)
    argv = exec_wrapper_argv(["true"], state_path=str(planted / "s"), limits=None, run_as=None)
    assert returncode(argv) == 126
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    argv = exec_wrapper_argv(["true"], state_path=str(tmp_path / "link" / "s"), limits=None)
    assert returncode(argv) == 126


def test_handover_gives_files_to_the_candidate_but_never_through_links(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    sub = tmp_path / "sub"
    sub.mkdir()
    written = sub / "written.py"
    written.write_text("x")
    elsewhere = tmp_path / "root-file"
    elsewhere.write_text("root's")
    linked = sub / "hardlink"
    os.link(elsewhere, linked)
    symlink = sub / "symlink"
    symlink.symlink_to(elsewhere)
    paths = [str(p) for p in (sub, written, linked, symlink)]
    assert returncode(handover_argv(paths)) == 0
    assert (sub.stat().st_uid, written.stat().st_uid) == (CANDIDATE_UID, CANDIDATE_UID)
    assert written.stat().st_mode & 0o060 == 0o060  # group (the agent) may edit
    assert elsewhere.stat().st_uid == 0  # neither through the hard link nor the symlink
    assert symlink.lstat().st_uid == 0


def _winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


def test_pty_wrapper_sizes_the_terminal_and_resize_changes_it(tmp_path: Path) -> None:
    state = tmp_path / "pty"
    master, slave = pty.openpty()
    argv = exec_wrapper_argv(
        ["sleep", "30"], state_path=str(state), limits=None, pty_size=(132, 43), run_as=None
    )
    shell = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(state.read_text().split() if state.exists() else []) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert state.read_text().split()[1] == os.ttyname(slave)
        while _winsize(master) != (132, 43):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        subprocess.run(resize_argv(str(state), 100, 30), check=True, timeout=30)
        assert _winsize(master) == (100, 30)
    finally:
        shell.kill()
        shell.wait()
        os.close(master)
        os.close(slave)


def test_guard_refuses_symlink_escapes(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    (root / "src").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (root / "inside").symlink_to(root / "src")
    (root / "dangling").symlink_to("/nonexistent-dir/file")

    def check(relative: str, follow_last: bool = True) -> int:
        return returncode(guard_argv(f"{root}/{relative}", follow_last=follow_last, root=str(root)))

    assert check("main.py") == 0
    assert check("src/new/deeper/file.txt") == 0
    assert check("inside/file.txt") == 0
    assert check("escape/passwd") == GUARD_ESCAPES
    assert check("escape/new/file") == GUARD_ESCAPES
    assert check("escape") == GUARD_ESCAPES
    assert check("dangling") == GUARD_ESCAPES
    # Without following the last component a link itself can be stat'ed or
    # deleted, and is reported as a link.
    assert check("escape", follow_last=False) == GUARD_SYMLINK
    assert check("dangling", follow_last=False) == GUARD_SYMLINK
    assert check("src", follow_last=False) == 0
    assert check("escape/x", follow_last=False) == GUARD_ESCAPES


# -- handles over a stand-in ContainerProcess ----------------------------------------


class _Reader:
    """Stand-in for the SDK's StreamReader: an async iterator of bytes."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks


class _Call:
    """Stand-in for a synchronicity method: only ``.aio`` is used."""

    def __init__(self, fn: Any) -> None:
        self.aio = fn


async def test_stdout_and_stderr_are_drained_concurrently() -> None:
    """Imitates Modal's ContainerProcess (unreachable here) at the outermost boundary only.

    stdout produces nothing until 500 stderr chunks have been consumed, as a
    process blocked on a full stderr pipe would; reading the streams one after
    the other would hang here.
    """
    stderr_read = asyncio.Event()

    async def stdout() -> AsyncIterator[bytes]:
        await stderr_read.wait()
        yield b"out"

    async def stderr() -> AsyncIterator[bytes]:
        for i in range(500):
            yield b"e%d" % i
        stderr_read.set()

    process = type("Process", (), {"stdout": _Reader(stdout()), "stderr": _Reader(stderr())})()
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(10):
        async for item in _drain(process, ("stdout", "stderr")):  # type: ignore[arg-type]
            got.append(item)
    assert [d for s, d in got if s == "stdout"] == [b"out"]
    assert [d for s, d in got if s == "stderr"] == [b"e%d" % i for i in range(500)]


class _StandInProcess:
    """Stand-in for Modal's ContainerProcess: ``wait`` returns once killed (137)."""

    def __init__(self) -> None:
        self.killed = asyncio.Event()
        self.wait = _Call(self._wait)
        self.poll = _Call(self._poll)

    async def _wait(self) -> int:
        await self.killed.wait()
        return 137

    async def _poll(self) -> int | None:
        return 137 if self.killed.is_set() else None


async def test_exec_timeout_kills_the_tree_and_is_reported() -> None:
    """Imitates Modal's ContainerProcess (unreachable here) at the outermost boundary only.

    The handle's watchdog must kill the process tree (through the helper) at
    ``timeout_s`` -- sub-second, Modal's own timeout is whole seconds -- and
    report ``timed_out`` with SIGKILL and no exit code.
    """
    process = _StandInProcess()
    helper_calls: list[list[str]] = []

    async def helper(argv: Any) -> int:
        helper_calls.append(list(argv))
        process.killed.set()
        return 0

    handle = ModalExecHandle(
        process,  # type: ignore[arg-type]
        state_path="/tmp/.interviewlm/x",
        context=ProcessContext(helper=helper),
        timeout_s=0.2,
    )
    started = time.monotonic()
    status = await asyncio.wait_for(handle.wait(), 5)
    assert 0.2 <= time.monotonic() - started < 2
    assert (status.timed_out, status.exit_code, status.signal) == (True, None, signal.SIGKILL)
    assert helper_calls == [kill_tree_argv("/tmp/.interviewlm/x")]
    assert await handle.wait() == status  # one wait, shared


async def test_terminated_sandbox_ends_waits_that_modal_never_answers() -> None:
    """Imitates Modal's ContainerProcess (unreachable here) at the outermost boundary only.

    When the worker is gone the SDK's exec wait can retry forever; the end of
    the sandbox (seen by this replica) must end the wait as a kill.
    """
    process = _StandInProcess()  # never killed: wait() would hang
    context = ProcessContext(helper=lambda argv: asyncio.sleep(0, 0))
    handle = ModalExecHandle(process, state_path="/tmp/x", context=context)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(handle.wait())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    context.ended.set()
    status = await asyncio.wait_for(waiting, 5)
    assert (status.exit_code, status.signal, status.timed_out) == (None, signal.SIGKILL, False)


# -- live, against Modal ---------------------------------------------------------------


@pytest.fixture(
    params=[
        # Client side only (see tests/modal_standin): runs in every CI run.
        pytest.param("modal-standin"),
        pytest.param("modal", marks=pytest.mark.modal),
    ]
)
async def live_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ModalSandboxBackend]:
    token_id, token_secret = CREDENTIALS
    if request.param == "modal-standin":
        env: dict[str, str] = request.getfixturevalue("modal_standin_env")
        for key, value in env.items():
            monkeypatch.setenv(key, value)  # the SDK reads MODAL_SERVER_URL here
        token_id, token_secret = env["MODAL_TOKEN_ID"], env["MODAL_TOKEN_SECRET"]
    elif not (token_id and token_secret):
        pytest.skip("Modal credentials not set (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)")
    backend = ModalSandboxBackend(
        token_id=token_id, token_secret=token_secret, app_prefix="interviewlm-test"
    )
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.mark.timeout(600)
async def test_live_smoke(live_backend: ModalSandboxBackend) -> None:
    backend = live_backend
    info = await backend.create(
        SandboxSpec(language=Language.PYTHON, tags={"account": "smoke"}, timeout_s=600)
    )
    try:
        assert info.status is SandboxStatus.RUNNING
        assert (await backend.attach(info.id)).id == info.id
        result = await base.run(backend, info.id, ["sh", "-c", "echo hello; echo oops >&2; exit 3"])
        assert (result.exit_code, result.stdout, result.stderr) == (3, b"hello\n", b"oops\n")
        await backend.write_file(info.id, "dir/hello.txt", b"hi there")
        assert await backend.read_file(info.id, "dir/hello.txt") == b"hi there"
        assert [e.path for e in await backend.list_files(info.id)] == ["dir", "dir/hello.txt"]
        slow = await base.run(backend, info.id, "sleep 30", timeout_s=2)
        assert slow.timed_out
        with pytest.raises(InvalidPath):
            await backend.read_file(info.id, "../etc/passwd")
        ids = [i.id for i in await backend.list({"account": "smoke"})]
        assert info.id in ids
    finally:
        await backend.terminate(info.id)
        await backend.terminate(info.id)  # idempotent
    assert await backend.status(info.id) in (SandboxStatus.TERMINATED, SandboxStatus.ERROR)
    assert await backend.read_file(info.id, "dir/hello.txt") == b"hi there"  # via the Volume
    await backend.remove(info.id)
