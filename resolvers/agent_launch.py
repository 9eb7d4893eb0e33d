"""How the agent is started in a sandbox: a tiny Node launcher in front of the CLI.

Nothing secret is in any argv and nothing the candidate can write is loaded
as the agent's configuration (issue 9):

* The run token and the prompt arrive on the launcher's stdin (one JSON
  header line, then the prompt); argvs are visible to the host's ``ps`` and to
  every process in the sandbox. The prompt goes on to the CLI's stdin, so it
  can never be read as an option (``-p`` without a prompt argument reads it).
* The CLI runs with ``--bare`` (no hooks, plugins, CLAUDE.md discovery,
  auto-memory), ``--setting-sources ""`` (no user/project/local settings),
  ``--settings`` written here (``disableAllHooks``) and ``--strict-mcp-config``
  with an empty MCP configuration. Its ``CLAUDE_CONFIG_DIR`` is a fresh
  ``mkdtemp`` directory per run, with only ``projects`` (the conversations, for
  ``--resume`` across sandbox restarts) linked to the workspace.
* Local sandboxes have no network: the launcher listens on the sandbox's own
  loopback and pipes each connection to the proxy's Unix socket bound in for
  this command only. Modal sandboxes reach the proxy at ``PUBLIC_URL``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from modal_app.base import NetworkPolicy

CONVERSATIONS = "/workspace/.interviewlm/claude/projects"
CLI_SETTINGS = json.dumps({"disableAllHooks": True})
EMPTY_MCP = json.dumps({"mcpServers": {}})
_CONVERSATION_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
QUIET_ENV = {
    "IS_SANDBOX": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


@dataclass(frozen=True, slots=True)
class AgentLink:
    """How one agent command reaches the API proxy."""

    network: NetworkPolicy
    """Passed to the exec: the proxy host's egress (Modal) or its socket (local)."""
    base_url: str | None = None
    """The proxy's URL as the sandbox sees it (Modal)."""
    socket: str | None = None
    """The proxy's Unix socket inside the sandbox (local); reached via loopback."""
    path: str = ""
    """The proxy's path prefix behind the socket."""


LAUNCHER = r"""
const fs = require('fs'), net = require('net'), os = require('os'), path = require('path');
const cp = require('child_process');
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const all = Buffer.concat(chunks), nl = all.indexOf(10);
  const head = JSON.parse(all.subarray(0, nl).toString()), prompt = all.subarray(nl + 1);
  const config = fs.mkdtempSync(path.join(os.tmpdir(), 'claude-'));
  try {  // without it (the candidate broke the path) the conversation is not kept
    fs.mkdirSync(head.conversations, { recursive: true });
    fs.symlinkSync(head.conversations, path.join(config, 'projects'));
  } catch (e) { process.stderr.write('conversations not kept: ' + e.code + '\n'); }
  const env = Object.assign({}, process.env, {
    CLAUDE_CONFIG_DIR: config, ANTHROPIC_API_KEY: head.token,
    CLAUDE_PROMPT: prompt.toString(),
    // fetch's HTTP parser is WebAssembly, whose guard-region reservation
    // does not fit the sandbox's address-space limit without this.
    NODE_OPTIONS: ((process.env.NODE_OPTIONS || '') + ' --disable-wasm-trap-handler').trim(),
  });
  const run = (base, server) => {
    env.ANTHROPIC_BASE_URL = base;
    const child = cp.spawn(process.argv[1], process.argv.slice(2),
      { env, stdio: ['pipe', 'inherit', 'inherit'] });
    child.stdin.on('error', () => {});
    child.stdin.end(prompt);
    for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => child.kill(s));
    child.on('error', (e) => { process.stderr.write('cannot start the agent: ' + e.code + '\n');
      process.exit(127); });
    child.on('exit', (code, sig) => { if (server) server.close();
      process.exit(code === null ? 128 + (os.constants.signals[sig] || 9) : code); });
  };
  if (!head.socket) return run(head.baseUrl, null);
  const server = net.createServer((c) => {
    const u = net.connect(head.socket);
    c.pipe(u); u.pipe(c);
    c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  });
  server.listen(0, '127.0.0.1', () =>
    run('http://127.0.0.1:' + server.address().port + head.path, server));
});
"""


def cli_argv(max_turns: int, resume: str | None) -> list[str]:
    argv = [
        "claude",
        "-p",
        "--bare",
        "--setting-sources",
        "",
        "--settings",
        CLI_SETTINGS,
        "--strict-mcp-config",
        "--mcp-config",
        EMPTY_MCP,
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
        "--max-turns",
        str(max_turns),
    ]
    # The id comes from an earlier run's output; only a well-formed one is passed on.
    if resume and _CONVERSATION_ID.match(resume):
        argv += ["--resume", resume]
    return argv


def launch(
    link: AgentLink, token: str, prompt: str, agent_argv: list[str]
) -> tuple[list[str], bytes]:
    """The exec's argv (no secrets) and what to write to its stdin (token, prompt)."""
    head = {
        "token": token,
        "socket": link.socket,
        "path": link.path,
        "baseUrl": link.base_url,
        "conversations": CONVERSATIONS,
    }
    stdin = json.dumps(head).encode() + b"\n" + prompt.encode()
    return ["node", "-e", LAUNCHER, "--", *agent_argv], stdin
