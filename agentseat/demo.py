"""`agentseat demo`: the whole loop on the embedded sandbox, with no tenant and no setup by hand.

It starts the sandbox in this process, provisions the agent with the same code as
`agentseat setup`, and starts `agentseat serve` as a child in webhook mode on loopback,
driven over a real MCP stdio client session. Then a sponsor DMs the agent (the channel
push arrives), the agent answers with `send_teams_message` (the sponsor's chat shows
it); a colleague the agent does not know DMs it, is held and gets a pairing code, the
sponsor DMs `approve CODE` and the held message is pushed; then her mail reaches the
agent (pushed too) and the agent answers with `reply_email`.
Each step prints one line with its measured latency; each has a bounded timeout.

It owns the tour and its printed lines (stdout: this is CLI output, not a protocol),
not the parts it drives: the sandbox, setup and the MCP server each live elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import anyio
import keyring
import mcp_types as types
from keyring.backends.fail import Keyring as NoKeyring
from mcp import ClientSession, StdioServerParameters
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

from .config import Settings
from .errors import AgentSeatError
from .identity.configfile import read_env_file
from .identity.provision import SetupOptions, setup
from .logging import configure
from .sandbox.app import Sandbox, SandboxOptions
from .sandbox.envfile import sandbox_settings
from .tools.channel import METHOD, ChannelParams

#: Every step ends well within this (milliseconds on a laptop); past it, the demo fails and says where.
STEP_TIMEOUT = 30.0
DM_TEXT = "Hi! Can you summarise the report?"
REPLY_TEXT = "Sure! Three findings, one risk, and the launch stays on track."
ASK_TEXT = "Hi, can I send you the Q3 budget questions?"
MAIL_SUBJECT = "Budget figures for Q3"
MAIL_BODY = "Could you send me the latest budget figures before Friday?"
MAIL_REPLY = "Hi Grace, the Q3 figures are attached to the project page; the short version: on budget."


def _ms(seconds: float) -> str:
    ms = max(seconds, 0.0) * 1000
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


@contextmanager
def _step(name: str, log_path: Path | None = None) -> Iterator[None]:
    hint = (f"the end of the agentseat serve log is shown above (the whole log: {log_path}, kept with --dir)"
            if log_path else "run again with -v for debug logs")
    try:
        with anyio.fail_after(STEP_TIMEOUT):
            yield
    except TimeoutError:
        raise AgentSeatError(f"demo step '{name}' did not finish within {STEP_TIMEOUT:g} s", hint=hint) from None


class _Agent:
    """The MCP client side: tool calls, and channel pushes with the moment each arrived."""

    def __init__(self, session: ClientSession, pushes: anyio.abc.ObjectReceiveStream[tuple[float, ChannelParams]]
                 ) -> None:
        self.session = session
        self._pushes = pushes

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.session.call_tool(name, arguments)
        block = result.content[0] if result.content else None
        text = block.text if isinstance(block, types.TextContent) else ""
        if result.is_error:
            raise AgentSeatError(f"the tool {name} failed: {text}")
        return json.loads(text)  # type: ignore[no-any-return]

    async def next_push(self) -> tuple[float, ChannelParams]:
        return await self._pushes.receive()


@asynccontextmanager
async def _serve(env: dict[str, str], workdir: Path, log_path: Path) -> AsyncIterator[_Agent]:
    """`agentseat serve` as a child process, connected over stdio (not yet initialized)."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentseat.cli", "serve"], env=env,
                                   cwd=str(workdir))
    send, receive = anyio.create_memory_object_stream[tuple[float, ChannelParams]](100)

    async def on_channel(params: ChannelParams) -> None:
        await send.send((time.perf_counter(), params))

    binding = NotificationBinding(method=METHOD, params_type=ChannelParams, handler=on_channel)
    with log_path.open("a") as errlog, send, receive:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, notification_bindings=[binding]) as session:
                yield _Agent(session, receive)


def _passphrase(agent_dir: Path) -> str:
    """The demo key's passphrase: random, kept 0600 beside the key so `--dir` can be run again.

    A demo key guards only a sandbox identity; a real agent's passphrase lives in the keyring.
    """
    agent_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = agent_dir / "demo-key-passphrase"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


class Demo:
    """One run of the tour in `directory`, printing to `out`."""

    def __init__(self, directory: Path, out: TextIO, *, verbose: bool = False) -> None:
        self.directory = directory
        self.out = out
        self.verbose = verbose
        self.agent_dir = directory / "agent"
        self.serve_log = self.agent_dir / "serve.log"
        self.passphrase = _passphrase(self.agent_dir)
        self.steps = 0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def ok(self, line: str) -> None:
        self.steps += 1
        self.say(f"✓ {line}")

    async def run(self) -> None:
        self.say("agentseat demo: a sandbox Microsoft 365 tenant, a provisioned agent and its MCP server, "
                 "all on this machine\n")
        start = time.perf_counter()
        sandbox = Sandbox(self.directory / "sandbox", SandboxOptions())
        async with sandbox.running(), aiohttp.ClientSession() as http:
            tenant = sandbox.tenant
            self.ok(f"sandbox tenant {tenant.domain} serving on {sandbox.url}  ({_ms(time.perf_counter() - start)})")
            env = await self._provision(sandbox)
            await self._tour(sandbox, http, env)
        self.say(f"\ndemo complete: {self.steps} steps passed. Next: `agentseat setup` for a real tenant "
                 "(see README.md).")

    def _settings(self, sandbox: Sandbox) -> Settings:
        values = {k[len("AGENTSEAT_"):].lower(): v for k, v in sandbox_settings(sandbox).items()
                  if k != "AGENTSEAT_SANDBOX_URL"}
        # Only the sandbox counts: identity settings from the caller's environment are blanked.
        blank = dict.fromkeys(("blueprint_app_id", "blueprint_object_id", "agent_id", "agent_object_id",
                               "agent_user_id", "cert_thumbprint", "license_sku_id"), "")
        return Settings(_env_file=None, **{**blank, **values},  # type: ignore[arg-type]
                        agent_display_name=Settings.model_fields["agent_display_name"].default,
                        state_dir=self.agent_dir, config_file=self.agent_dir / "agentseat.env",
                        key_passphrase=self.passphrase)

    async def _provision(self, sandbox: Sandbox) -> dict[str, str]:
        """`agentseat setup` against the sandbox; returns the environment for `agentseat serve`."""
        start = time.perf_counter()
        settings = self._settings(sandbox)
        out, err = io.StringIO(), io.StringIO()
        # The demo's throwaway key must not leave its passphrase in the user's real keyring.
        previous = keyring.get_keyring()
        keyring.set_keyring(NoKeyring())
        try:
            with _step("provision the agent"):
                await setup(settings, SetupOptions(), out=out, err=err)
        finally:
            keyring.set_keyring(previous)
        assert settings.config_file is not None
        config = read_env_file(settings.config_file)
        summary = out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else ""
        agent = sandbox.tenant.users[config["AGENTSEAT_AGENT_USER_ID"]]
        sponsor = sandbox.tenant.users[sandbox.role("sponsor")]
        self.ok(f"agent provisioned by `agentseat setup` ({summary}): {agent.display_name} ({agent.upn}), "
                f"sponsor {sponsor.display_name}  ({_ms(time.perf_counter() - start)})")
        package_root = Path(__file__).resolve().parent.parent
        return {**config, "AGENTSEAT_STATE_DIR": str(self.agent_dir),
                "AGENTSEAT_CONFIG_FILE": str(settings.config_file), "AGENTSEAT_MODE": "webhook",
                "AGENTSEAT_TUNNEL": "loopback", "AGENTSEAT_KEY_PASSPHRASE": self.passphrase,
                "AGENTSEAT_INBOUND_POLICY": "pairing",
                "AGENTSEAT_LOG_LEVEL": "debug" if self.verbose else "info",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "PYTHONPATH": str(package_root)}

    async def _control(self, http: aiohttp.ClientSession, sandbox: Sandbox, method: str, path: str,
                       body: Any = None) -> Any:
        async with http.request(method, sandbox.url + path, json=body, ssl=sandbox.client_ssl_context()) as resp:
            data = await resp.json()
            if resp.status >= 300:
                raise AgentSeatError(f"the sandbox refused {method} {path}: {data.get('error', resp.status)}")
            return data

    async def _tour(self, sandbox: Sandbox, http: aiohttp.ClientSession, env: dict[str, str]) -> None:
        users = sandbox.tenant.users
        sponsor, grace = users[sandbox.role("sponsor")], users[sandbox.role("colleague1")]
        agent_upn = users[env["AGENTSEAT_AGENT_USER_ID"]].upn
        start = time.perf_counter()
        # Starting the child does not wait on it; every wait after that is a step with its own bound.
        async with _serve(env, self.agent_dir, self.serve_log) as agent:
            with _step("connect to agentseat serve", self.serve_log):
                init = await agent.session.initialize()
                tools = (await agent.session.list_tools()).tools
            if (init.capabilities.experimental or {}).get("claude/channel") is None:
                raise AgentSeatError("agentseat serve did not declare the claude/channel capability")
            self.ok(f"`agentseat serve` connected over MCP stdio: claude/channel capability, {len(tools)} tools  "
                    f"({_ms(time.perf_counter() - start)})")
            await self._until_webhook(agent, start)
            await self._teams(sandbox, http, agent, sponsor, agent_upn)
            await self._pairing(sandbox, http, agent, sponsor, grace, agent_upn)
            await self._mail(sandbox, http, agent, grace, agent_upn)

    async def _until_webhook(self, agent: _Agent, start: float) -> None:
        with _step("runtime in webhook mode", self.serve_log):
            while True:
                status = await agent.call("status")
                if "runtime_error" in status:
                    raise AgentSeatError(f"the runtime stopped: {status['runtime_error']['message']}",
                                    hint=f"see {self.serve_log}")
                if status.get("source") == "webhook" and (status.get("channel") or {}).get("position") is not None:
                    break
                await anyio.sleep(0.05)
        kinds = ", ".join(sorted(status.get("subscriptions") or {})) or "none"
        self.ok(f"runtime in webhook mode on loopback ({status.get('public_url')}), subscribed to: {kinds}  "
                f"({_ms(time.perf_counter() - start)})")

    def _show(self, push: ChannelParams) -> None:
        head = push.content.splitlines()[0] if push.content else ""
        self.say(f"    the agent sees: {head}")

    async def _teams(self, sandbox: Sandbox, http: aiohttp.ClientSession, agent: _Agent, sponsor: Any,
                     agent_upn: str) -> None:
        with _step("sponsor DMs the agent", self.serve_log):
            posted = await self._control(http, sandbox, "POST", "/_sandbox/messages",
                                         {"from": sponsor.upn, "to": agent_upn, "text": DM_TEXT})
            answered = time.perf_counter()
            while True:
                arrived, push = await agent.next_push()
                if push.meta and push.meta.get("message_id") == posted["message_id"]:
                    break
        self.ok(f'sponsor {sponsor.display_name} → agent: "{DM_TEXT}"  channel push after {_ms(arrived - answered)}')
        self._show(push)

        with _step("the agent replies with send_teams_message", self.serve_log):
            start = time.perf_counter()
            sent = await agent.call("send_teams_message", chat_id=posted["chat_id"], text=REPLY_TEXT)
            path = f"/_sandbox/chats/{posted['chat_id']}/messages"
            while not any(m["id"] == sent["message_id"] for m in
                          (await self._control(http, sandbox, "GET", path))["messages"]):
                await anyio.sleep(0.01)
            visible = time.perf_counter()
        self.ok(f'agent → {sponsor.display_name} with send_teams_message: "{REPLY_TEXT}"  '
                f"in the sponsor's chat after {_ms(visible - start)}")

    async def _chat(self, http: aiohttp.ClientSession, sandbox: Sandbox, chat_id: str) -> list[dict[str, Any]]:
        return (await self._control(http, sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages"))["messages"]

    async def _pairing(self, sandbox: Sandbox, http: aiohttp.ClientSession, agent: _Agent, sponsor: Any,
                       colleague: Any, agent_upn: str) -> None:
        """A colleague the agent does not know yet: held with a pairing code until the sponsor approves."""
        with _step("a colleague DMs the agent and gets a pairing code", self.serve_log):
            asked = await self._control(http, sandbox, "POST", "/_sandbox/messages",
                                        {"from": colleague.upn, "to": agent_upn, "text": ASK_TEXT})
            start = time.perf_counter()
            while not (codes := [m for m in await self._chat(http, sandbox, asked["chat_id"])
                                 if m["from"] == agent_upn]):
                await anyio.sleep(0.02)
            seen = time.perf_counter()
        code = re.search(r"code: ([A-Z0-9]{6})", codes[0]["text"])
        if code is None:
            raise AgentSeatError("the agent's reply to an unknown sender carried no pairing code")
        self.ok(f'{colleague.display_name} → agent: "{ASK_TEXT}"  held, not pushed; the agent replied with '
                f"pairing code {code.group(1)} after {_ms(seen - start)}")

        with _step("the sponsor approves the code in Teams", self.serve_log):
            start = time.perf_counter()
            posted = await self._control(http, sandbox, "POST", "/_sandbox/messages",
                                         {"from": sponsor.upn, "to": agent_upn, "text": f"approve {code.group(1)}"})
            while True:
                arrived, push = await agent.next_push()
                if push.meta and push.meta.get("message_id") == posted["message_id"]:
                    raise AgentSeatError("the sponsor's `approve CODE` was pushed instead of consumed")
                if push.meta and push.meta.get("message_id") == asked["message_id"]:
                    if arrived < start:
                        raise AgentSeatError("the unknown colleague's message was pushed before any approval")
                    break
            # The agent also answers the sponsor (Teams paces its sends to one a second).
            while not any(m["from"] == agent_upn and m["text"].startswith("Approved")
                          for m in await self._chat(http, sandbox, posted["chat_id"])):
                await anyio.sleep(0.02)
        self.ok(f'sponsor {sponsor.display_name} → agent: "approve {code.group(1)}" (confirmed through Graph): '
                f"{colleague.display_name}'s held message pushed after {_ms(arrived - start)}")
        self._show(push)

    async def _mail(self, sandbox: Sandbox, http: aiohttp.ClientSession, agent: _Agent, sender: Any,
                    agent_upn: str) -> None:
        with _step("a mail arrives", self.serve_log):
            posted = await self._control(http, sandbox, "POST", "/_sandbox/mail",
                                         {"from": sender.upn, "to": agent_upn, "subject": MAIL_SUBJECT,
                                          "body": MAIL_BODY})
            answered = time.perf_counter()
            while True:
                arrived, push = await agent.next_push()
                if push.meta and push.meta.get("message_id") == posted["message_id"]:
                    break
        self.ok(f'mail from {sender.display_name} → agent: "{MAIL_SUBJECT}"  channel push after '
                f"{_ms(arrived - answered)}")
        self._show(push)

        with _step("the agent answers the mail with reply_email", self.serve_log):
            start = time.perf_counter()
            await agent.call("reply_email", message_id=posted["message_id"], body=MAIL_REPLY)
            path = f"/_sandbox/mail/{sender.upn}?folder=inbox"
            while not any(m["subject"] == f"RE: {MAIL_SUBJECT}" and m["from"] == agent_upn for m in
                          (await self._control(http, sandbox, "GET", path))["messages"]):
                await anyio.sleep(0.01)
            visible = time.perf_counter()
        self.ok(f'agent → {sender.display_name} with reply_email: "RE: {MAIL_SUBJECT}"  in her inbox after '
                f"{_ms(visible - start)}")


def run_demo(directory: Path | None = None, *, verbose: bool = False, out: TextIO | None = None) -> int:
    """`agentseat demo`: 0 when every step passed; a failed step raises `AgentSeatError` (exit 1)."""
    if not verbose:
        configure("warning")  # the tour's lines are the output; the parts' info logs would bury them
    stream = out or sys.stdout
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _run(Demo(directory, stream, verbose=verbose))
    with tempfile.TemporaryDirectory(prefix="agentseat-demo-") as tmp:
        return _run(Demo(Path(tmp), stream, verbose=verbose))


def _run(demo: Demo) -> int:
    try:
        anyio.run(demo.run)
    except BaseExceptionGroup as group:  # task groups wrap errors; report ours in one line
        matched, _ = group.split(AgentSeatError)
        error: BaseException | None = matched
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        if not isinstance(error, AgentSeatError):
            raise
        _tail(demo.serve_log)
        raise error from group
    except AgentSeatError:
        _tail(demo.serve_log)
        raise
    return 0


def _tail(log_path: Path, lines: int = 15) -> None:
    """The end of the server's log on stderr: the temporary directory is gone after exit."""
    if log_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
        print("--- last lines of the agentseat serve log ---", *tail, sep="\n", file=sys.stderr)
