"""Test helpers: run `agentseat serve` as a subprocess and talk to it with mcp's real stdio client."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client import _probe
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

import agentseat
from agentseat.sandbox.app import Sandbox
from agentseat.tools.channel import METHOD, ChannelParams
from agentseat.tools.permission import METHOD as PERMISSION_METHOD
from agentseat.tools.permission import PermissionParams

#: A safety bound only: every wait ends as soon as its condition holds.
BOUND = 60
#: The tree these tests import: mcp's stdio client passes only a few variables on (not PYTHONPATH),
#: and without this the subprocess would run whatever agentseat the venv has installed.
PACKAGE_ROOT = str(Path(agentseat.__file__).resolve().parent.parent)


@dataclass
class Served:
    session: ClientSession
    init: types.InitializeResult
    pushes: list[ChannelParams] = field(default_factory=list)
    permissions: list[PermissionParams] = field(default_factory=list)  # answers to relayed permission prompts
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def on_channel(self, params: ChannelParams) -> None:
        self.pushes.append(params)
        self._changed.set()

    async def on_permission(self, params: PermissionParams) -> None:
        self.permissions.append(params)
        self._changed.set()

    async def wait_pushes(self, count: int) -> list[ChannelParams]:
        with anyio.fail_after(BOUND):
            while len(self.pushes) < count:
                self._changed = anyio.Event()
                await self._changed.wait()
        return self.pushes

    async def wait_permissions(self, count: int) -> list[PermissionParams]:
        with anyio.fail_after(BOUND):
            while len(self.permissions) < count:
                self._changed = anyio.Event()
                await self._changed.wait()
        return self.permissions

    async def notify(self, method: str, **params: Any) -> None:
        """Send a client notification the SDK has no type for (as Claude Code sends its own)."""
        await self.session.send_notification(types.Notification[dict[str, Any], str](  # type: ignore[arg-type]
            method=method, params=params))

    async def call(self, name: str, **arguments: Any) -> types.CallToolResult:
        with anyio.fail_after(BOUND + 10):
            return await self.session.call_tool(name, arguments)

    async def call_json(self, name: str, **arguments: Any) -> Any:
        result = await self.call(name, **arguments)
        text = result.content[0].text  # type: ignore[union-attr]
        assert not result.is_error, text
        return json.loads(text)

    async def channel_caught_up(self, seq: int = 0) -> dict[str, Any]:
        """Wait until this server's channel sink runs and has seen the group through `seq`.

        Its pushes for everything up to `seq` were sent before the status answer that says so.
        """
        with anyio.fail_after(BOUND):
            while True:
                channel = (await self.call_json("status"))["channel"]
                if channel["position"] is not None and channel["position"] >= seq:
                    return channel  # type: ignore[no-any-return]
                await anyio.sleep(0.05)


@asynccontextmanager
async def serve(env: dict[str, str], workdir: Path, log_name: str = "serve", *,
                negotiate_auto: bool = False) -> AsyncIterator[Served]:
    """`agentseat serve` in a subprocess with `env`, connected over stdio; stopped (stdin closed) on exit.

    `negotiate_auto` connects as Claude Code does with MCP_PROTOCOL_NEGOTIATION=auto: a
    `server/discover` probe first, `initialize` only if the server does not take it.
    """
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentseat.cli", "serve"],
                                   env={"PYTHONPATH": PACKAGE_ROOT, **env}, cwd=str(workdir))
    log_path = workdir / f"{log_name}.log"
    with log_path.open("a") as errlog:
        served: Served | None = None

        async def on_channel(p: ChannelParams) -> None:
            assert served is not None
            await served.on_channel(p)

        async def on_permission(p: PermissionParams) -> None:
            assert served is not None
            await served.on_permission(p)

        bindings = [NotificationBinding(method=METHOD, params_type=ChannelParams, handler=on_channel),
                    NotificationBinding(method=PERMISSION_METHOD, params_type=PermissionParams, handler=on_permission)]
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, notification_bindings=bindings) as session:
                with anyio.fail_after(BOUND):
                    if negotiate_auto:
                        await _probe.negotiate_auto(session)
                        init = session.initialize_result
                        assert init is not None, "the server took the modern era: no channel capability there"
                    else:
                        init = await session.initialize()
                served = Served(session, init)
                yield served


async def post_dm(sandbox: Sandbox, sender: str, to: str, text: str) -> dict[str, Any]:
    """A direct message from `sender` to `to`, posted through the sandbox's control API."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}/_sandbox/messages", json={"from": sender, "to": to, "text": text},
                             ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]


async def post_chat(sandbox: Sandbox, sender: str, chat_id: str, text: str) -> dict[str, Any]:
    """A message from `sender` in an existing chat, through the control API."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}/_sandbox/messages", json={"from": sender, "chat_id": chat_id,
                             "text": text}, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]


async def chat_messages(sandbox: Sandbox, chat_id: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sandbox.url}/_sandbox/chats/{chat_id}/messages",
                            ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["messages"]  # type: ignore[no-any-return]


async def post_mail(sandbox: Sandbox, sender: str, to: str, subject: str, body: str) -> dict[str, Any]:
    """Mail from `sender` delivered to `to`, through the control API."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}/_sandbox/mail", json={"from": sender, "to": to, "subject": subject,
                             "body": body}, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]


async def mailbox(sandbox: Sandbox, upn: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sandbox.url}/_sandbox/mail/{upn}", ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["messages"]  # type: ignore[no-any-return]
