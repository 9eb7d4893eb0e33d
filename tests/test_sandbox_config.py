"""Sandbox configuration from the API (issue 14, seed 003): startSandbox(config) and a
question's default environment, on the local backend; the Modal mapping offline."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modal_app.base import WORKSPACE, Limits, SandboxSpec
from modal_app.base import run as run_in
from models.sandbox import SandboxRecord
from resolvers.errors import BadUserInput
from resolvers.sandbox_config import (
    DOCKERFILE_INSTRUCTIONS,
    ConfigLimits,
    SandboxConfig,
    check_config,
    spec_fields,
)
from tests.conftest import Account
from tests.modal_standin import ModalStandin
from tests.modal_standin.server import remove_root
from tests.question_support import CREATE, UPDATE, new_session, question_input, staff
from tests.support import Api
from tests.workspace_support import TERMINATE, run, start

pytestmark = pytest.mark.db

START = """mutation($s: ID!, $c: SandboxConfigInput) {
  startSandbox(sessionId: $s, config: $c) { id state }
}"""
ENVIRONMENT = "environment { image dockerfileCommands env { name value } workdir cpu memoryMb }"


async def _start(api: Api, session_id: str, token: str, config: Any) -> Any:
    return await api(START, {"s": session_id, "c": config}, token=token)


async def test_staff_config_env_and_workdir_reach_commands_and_survive_a_restart(
    api: Api, account: Account
) -> None:
    config = {
        "env": [{"name": "FOO", "value": "bar baz"}, {"name": "EMPTY", "value": ""}],
        "workdir": "app/src",
        "cpu": 1.5,
        "memoryMb": 1024,
    }
    started = await _start(api, account["sessionId"], account["interviewerToken"], config)
    assert started.ok()["startSandbox"]["state"] == "RUNNING"
    result = await run(api, account, 'echo "$FOO"; pwd; echo "${EMPTY-unset}"; env')
    lines = result["stdout"].splitlines()
    assert lines[:3] == ["bar baz", "/workspace/app/src", ""], result
    # Exactly the given variables: nothing of the server's own environment.
    assert not any(k in result["stdout"] for k in ("DATABASE_URL", "CREDENTIAL_KEY")), result
    # The same config again: the running sandbox; another one: CONFLICT.
    again = await _start(api, account["sessionId"], account["atsToken"], config)
    assert again.ok()["startSandbox"]["id"] == started.ok()["startSandbox"]["id"]
    other = await _start(api, account["sessionId"], account["atsToken"], {"workdir": "x"})
    assert other.codes == ["CONFLICT"], other.body
    # A restart by the candidate (no config) keeps the interviewer's configuration.
    ended = await api(TERMINATE, {"s": account["sessionId"]}, token=account["interviewerToken"])
    assert ended.ok()["terminateSandbox"]["state"] == "TERMINATED"
    assert (await start(api, account))["state"] == "RUNNING"
    result = await run(api, account, 'echo "$FOO"; pwd')
    assert result["stdout"] == "bar baz\n/workspace/app/src\n", result


REFUSED = [
    ({"image": "python:3.12"}, "config.image"),
    ({"dockerfileCommands": ["RUN pip install numpy"]}, "config.dockerfileCommands"),
    ({"cpu": 64.0}, "config.cpu"),
    ({"cpu": 0.0}, "config.cpu"),
    ({"memoryMb": 1 << 20}, "config.memoryMb"),
    ({"memoryMb": 8}, "config.memoryMb"),
    ({"env": [{"name": "foo", "value": "x"}]}, "config.env[0].name"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A=B", "value": "x"}]}, "config.env[1].name"),
    ({"env": [{"name": "PATH", "value": "/tmp"}]}, "config.env[0].name"),
    ({"env": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]}, "config.env[0].name"),
    ({"env": [{"name": "ANTHROPIC_BASE_URL", "value": "http://evil"}]}, "config.env[0].name"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "config.env[1].name"),
    ({"env": [{"name": "A", "value": "nul\u0000"}]}, "config.env[0].value"),
    ({"env": [{"name": "A", "value": "x" * 5000}]}, "config.env[0].value"),
    ({"env": [{"name": f"V{i}", "value": "x"} for i in range(65)]}, "config.env"),
    ({"workdir": "../etc"}, "config.workdir"),
    ({"workdir": "/etc"}, "config.workdir"),
    ({"workdir": "/workspace/a/../../root"}, "config.workdir"),
]


@pytest.mark.parametrize(("config", "field"), REFUSED, ids=[f for _, f in REFUSED])
async def test_what_cannot_be_honoured_is_refused_naming_the_field(
    api: Api, account: Account, config: dict[str, Any], field: str
) -> None:
    refused = await _start(api, account["sessionId"], account["interviewerToken"], config)
    assert refused.codes == ["BAD_USER_INPUT"], refused.body
    assert refused.errors[0]["extensions"]["field"] == field, refused.body
    # Refused before anything started: no sandbox, not even a failed one.
    assert await SandboxRecord.filter(session_id=account["sessionId"]).count() == 0


async def test_the_candidate_may_not_pass_a_config(api: Api, account: Account) -> None:
    for config in ({"env": [{"name": "FOO", "value": "1"}]}, {}, {"cpu": 64.0}):
        refused = await _start(api, account["sessionId"], account["candidateToken"], config)
        assert refused.codes == ["FORBIDDEN"], refused.body
    assert await SandboxRecord.filter(session_id=account["sessionId"]).count() == 0
    started = await _start(api, account["sessionId"], account["candidateToken"], None)
    assert started.ok()["startSandbox"]["state"] == "RUNNING"


async def test_a_question_environment_is_the_default_and_a_revision_keeps_it(
    api: Api, account: Account
) -> None:
    environment = {"env": [{"name": "GREETING", "value": "hi"}], "workdir": "/workspace/work"}
    made = await api(
        "mutation($in: CreateQuestionInput!) { createQuestion(input: $in) { id "
        + ENVIRONMENT
        + " } }",
        {"in": {**question_input("Configured"), "environment": environment}},
        token=staff(account),
    )
    question = made.ok()["createQuestion"]
    assert question["environment"] == {
        "image": None,
        "dockerfileCommands": [],
        "env": [{"name": "GREETING", "value": "hi"}],
        "workdir": "work",
        "cpu": None,
        "memoryMb": None,
    }
    session = await new_session(api, account, question["id"])
    candidate = {**account, **session}
    assert (await start(api, candidate))["state"] == "RUNNING"
    result = await run(api, candidate, 'echo "$GREETING"; pwd')
    assert result["stdout"] == "hi\n/workspace/work\n", result

    # Staff config goes over it: variables merged by name, the workdir replaced.
    second = {**account, **(await new_session(api, account, question["id"]))}
    config = {"env": [{"name": "OTHER", "value": "2"}], "workdir": ""}
    started = await _start(api, second["sessionId"], account["atsToken"], config)
    assert started.ok()["startSandbox"]["state"] == "RUNNING"
    result = await run(api, second, 'echo "$GREETING $OTHER"; pwd')
    assert result["stdout"] == "hi 2\n/workspace\n", result

    # A revision stores its own; the plain update (no environment) has none.
    revised = await api(
        UPDATE.replace("testCases { name hidden }", ENVIRONMENT),
        {"id": question["id"], "in": question_input("Configured")},
        token=staff(account),
    )
    assert revised.ok()["updateQuestion"]["environment"] is None


@pytest.mark.parametrize(
    ("environment", "field"),
    [
        ({"image": "python:3.12"}, "input.environment.image"),
        ({"cpu": 99.0}, "input.environment.cpu"),
        ({"workdir": "../x"}, "input.environment.workdir"),
        ({"env": [{"name": "HOME", "value": "/"}]}, "input.environment.env[0].name"),
    ],
)
async def test_a_question_environment_is_checked_like_a_config(
    api: Api, account: Account, environment: dict[str, Any], field: str
) -> None:
    made = await api(
        CREATE,
        {"in": {**question_input("Bad env"), "environment": environment}},
        token=staff(account),
    )
    assert made.codes == ["BAD_USER_INPUT"], made.body
    assert made.errors[0]["extensions"]["field"] == field


def test_where_images_are_served_the_config_maps_to_the_modal_sandbox_arguments() -> None:
    """Offline (no Modal): the checked config -> SandboxSpec -> ``Sandbox.create`` args."""
    from modal_app.modal import images
    from modal_app.modal.spec import ModalOptions, sandbox_create_args

    assert images.ALLOWED_DOCKERFILE_INSTRUCTIONS == DOCKERFILE_INSTRUCTIONS
    limits = ConfigLimits(max_cpu=4, max_memory_mb=4096, serves_images=True)
    config = check_config(
        "config",
        image="python:3.12-slim",
        dockerfile_commands=["RUN pip install numpy==2.1.0", "ENV MODE=test"],
        env=[("FOO", "bar")],
        workdir="app",
        cpu=1.5,
        memory_mb=1024,
        limits=limits,
    )
    spec = SandboxSpec(language=None, tags={"session": "s1"}, **spec_fields(config, Limits()))
    assert spec.image is not None
    assert (spec.image.base, spec.image.commands) == (
        "python:3.12-slim",
        ("RUN pip install numpy==2.1.0", "ENV MODE=test"),
    )
    images.validate_image_spec(spec.image)  # what the Modal backend checks again at create
    image = images.ImageCatalog().image_for(spec.language, spec.image)
    args = sandbox_create_args(
        spec, image=image, prefix="ilm", options=ModalOptions(), client=None, now=0
    )
    assert args.image is image
    assert args.env["FOO"] == "bar"
    assert args.workdir == f"{WORKSPACE}/app"
    assert args.cpu == (1.5, 1.5)
    assert args.memory == (1024, 1024)
    with pytest.raises(BadUserInput) as refused:
        check_config(
            "config",
            image="python:3.12",
            dockerfile_commands=["COPY . /app"],
            env=[],
            workdir=None,
            cpu=None,
            memory_mb=None,
            limits=limits,
        )
    assert refused.value.field == "config.dockerfileCommands[0]"
    assert SandboxConfig.from_json(config.to_json()) == config


@pytest.fixture
async def standin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModalStandin]:
    # As tests/test_modal_standin.py: tempfile (the sandbox uids traverse every ancestor).
    root = Path(tempfile.mkdtemp(prefix="ilm-config-standin-"))
    root.chmod(0o711)
    server = ModalStandin(root)
    await server.start()
    for key, value in server.environ().items():
        monkeypatch.setenv(key, value)
    try:
        yield server
    finally:
        await server.stop()
        remove_root(root)


async def test_a_config_reaches_modal_through_the_real_sdk(standin: ModalStandin) -> None:
    """Client side only (the stand-in is not Modal; it builds no image, it honours ENV
    lines): the checked config, as SandboxCreateV2 / ImageGetOrCreate carry it. The
    workdir is /workspace itself: the stand-in's container cannot start in a directory
    that does not exist yet (whether Modal creates one, as Docker does, is unproven)."""
    from modal_app.modal.backend import ModalSandboxBackend

    limits = ConfigLimits(max_cpu=4, max_memory_mb=4096, serves_images=True)
    config = check_config(
        "config",
        image="python:3.12-slim",
        dockerfile_commands=["ENV MODE=test", "RUN pip install numpy==2.1.0"],
        env=[("FOO", "bar baz")],
        workdir="/workspace",
        cpu=1.5,
        memory_mb=1024,
        limits=limits,
    )
    spec = SandboxSpec(language=None, tags={"session": "s2"}, **spec_fields(config, Limits()))
    backend = ModalSandboxBackend(token_id=standin.token_id, token_secret=standin.token_secret)
    await backend.start()
    try:
        info = await backend.create(spec)
        result = await run_in(backend, info.id, 'echo "$FOO $MODE"; pwd', timeout_s=30)
        assert result.stdout == b"bar baz test\n/workspace\n", result
        await backend.terminate(info.id)
    finally:
        await backend.aclose()
    created = standin.control.requests_of("SandboxCreateV2")[-1]
    resources = created.definition.resources
    assert (resources.milli_cpu, resources.memory_mb) == (1500, 1024)
    assert created.definition.workdir == "/workspace"
    recipes = [
        list(r.image.dockerfile_commands) for r in standin.control.requests_of("ImageGetOrCreate")
    ]
    # Two layers, as the SDK builds them: the registry image, then the lines on top.
    assert recipes[-2:] == [
        ["FROM python:3.12-slim"],
        ["FROM base", "ENV MODE=test", "RUN pip install numpy==2.1.0"],
    ], recipes
