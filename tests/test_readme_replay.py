"""The README's replay example, run as written against a real server process.

The Python block under "Replay" in README.md is extracted and executed in a
child process against ``interviewlm serve`` (same database): the workspace it
rebuilds at a seq must equal ``snapshot(sessionId, atSeq)`` byte for byte, so
the documentation cannot drift from the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from pathlib import Path

from tests.conftest import Account
from tests.server import ServerProcess
from tests.support import Api
from tests.workspace_support import DELETE, WRITE

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = """query($s: ID!, $a: Int) {
  snapshot(sessionId: $s, atSeq: $a) { path sha256 } }"""
LAST_SEQ = "query($s: ID!) { session(id: $s) { lastSeq } }"


def replay_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Replay: the workspace at any `seq`") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md lost its replay example"
    return match.group(1)


async def test_the_readme_replay_rebuilds_the_snapshot(
    api: Api, account: Account, live_server: ServerProcess, tmp_path: Path
) -> None:
    sid, staff = account["sessionId"], account["interviewerToken"]

    async def write(path: str, content: str) -> None:
        await api(WRITE, {"s": sid, "p": path, "c": content}, token=account["candidateToken"])

    async def last_seq() -> int:
        return int((await api(LAST_SEQ, {"s": sid}, token=staff)).ok()["session"]["lastSeq"])

    await write("solution.py", "def f():\n    return 1\n")
    await write("lib/util.py", "X = 1\n")
    middle = await last_seq()
    await write("solution.py", "def f():\n    return 2\n")
    await api(DELETE, {"s": sid, "p": "lib"}, token=account["candidateToken"])
    end = await last_seq()

    script = tmp_path / "replay.py"
    script.write_text(replay_script())
    for seq in (middle, end):
        out = tmp_path / f"out{seq}"
        out.mkdir()
        # Not subprocess.run: the app under test shares this event loop and must keep going.
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            live_server.url,
            staff,
            sid,
            str(seq),
            str(out),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(child.communicate(), timeout=60)
        assert child.returncode == 0, stderr.decode()
        rebuilt = {
            str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*")
            if p.is_file()
        }
        expected = (await api(SNAPSHOT, {"s": sid, "a": seq}, token=staff)).ok()["snapshot"]
        assert rebuilt == {f["path"]: f["sha256"] for f in expected}
        assert rebuilt  # the snapshot is not empty: the comparison means something
    then = (await api(SNAPSHOT, {"s": sid, "a": middle}, token=staff)).ok()["snapshot"]
    assert "lib/util.py" in {f["path"] for f in then}  # the deleted directory, back in time
