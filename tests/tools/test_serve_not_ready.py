"""`agentseat serve` always connects: with broken settings it still answers `initialize`, declares the
channel, and its tools say what is wrong and the command that fixes it; a restart after the fix works.

Each case runs the real subprocess over a real stdio ClientSession.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import PACKAGE_ROOT, Served, serve

#: A tool that needs the runtime; while the server is not ready it must explain, like every such tool.
OTHER_TOOLS = ("read_events", "list_chats", "send_email")


def _first_line(log: Path) -> str:
    return log.read_text().splitlines()[0]


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _assert_not_ready(served: Served, problem: str, fix: str) -> dict[str, Any]:
    """status and whoami diagnose; every other tool returns the same error."""
    # The channel is always declared. The permission relay is declared only where a runtime
    # exists to check who answers (a runtime that cannot reach its tenant yet, not a missing setup).
    experimental = served.init.capabilities.experimental or {}
    assert experimental.get("claude/channel") == {}
    assert set(experimental) <= {"claude/channel", "claude/channel/permission"}
    tools = {t.name for t in (await served.session.list_tools()).tools}
    assert {"status", "whoami", "send_teams_message", "send_card", "read_events"} <= tools
    status = await served.call_json("status")
    whoami = await served.call_json("whoami")
    for view in (status, whoami):
        assert view["ready"] is False
        assert problem in view["problem"] and fix in view["fix"]
        assert "restart" in view["then"]
    for name in OTHER_TOOLS:
        result = await served.call(name)
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error and status["problem"] in text and fix in text
    return status  # type: ignore[no-any-return]


async def _assert_ready(served: Served, sandbox: Sandbox) -> None:
    status = await served.call_json("status")
    assert status["ready"] is True
    whoami = await served.call_json("whoami")
    assert whoami["agent"]["upn"] == sandbox.tenant.users[sandbox.role("agent_user")].upn
    chats = await served.call("list_chats")
    assert not chats.is_error, chats.content[0].text  # type: ignore[union-attr]


async def test_without_setup_serve_connects_and_says_run_setup(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"AGENTSEAT_STATE_DIR": str(state), "AGENTSEAT_CONFIG_FILE": str(state / "agentseat.env"),
           "AGENTSEAT_LOG_LEVEL": "debug", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    async with serve(env, tmp_path) as served:
        assert "not ready" in (served.init.instructions or "")
        # Without a runtime nothing can check who answers a permission prompt: not declared.
        assert served.init.capabilities.experimental == {"claude/channel": {}}
        status = await _assert_not_ready(served, "missing settings AGENTSEAT_TENANT_ID", "`agentseat setup`")
        assert "`agentseat doctor`" in status["fix"]
    first = _first_line(tmp_path / "serve.log")
    assert "serve_not_ready" in first and "missing settings" in first and "agentseat setup" in first


async def test_invalid_settings_are_named_not_crashed_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"AGENTSEAT_STATE_DIR": str(state), "AGENTSEAT_GRAPH_URL": "not a url",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    async with serve(env, tmp_path) as served:
        await _assert_not_ready(served, "AGENTSEAT_GRAPH_URL", "agentseat doctor")
    assert "AGENTSEAT_GRAPH_URL" in _first_line(tmp_path / "serve.log")


async def test_a_bad_key_passphrase_is_named_and_a_restart_after_the_fix_works(
        sandbox: Sandbox, agent_env: dict[str, str], tmp_path: Path) -> None:
    broken = {**agent_env, "AGENTSEAT_KEY_PASSPHRASE": "not-the-passphrase"}
    async with serve(broken, tmp_path, "broken") as served:
        await _assert_not_ready(served, "cannot decrypt", "AGENTSEAT_KEY_PASSPHRASE")
    first = _first_line(tmp_path / "broken.log")
    assert "serve_not_ready" in first and "cannot decrypt" in first and "AGENTSEAT_KEY_PASSPHRASE" in first

    async with serve(agent_env, tmp_path, "fixed") as served:  # the fix is in the environment: restart
        await _assert_ready(served, sandbox)


@pytest.mark.parametrize("mode", ["webhook", "auto", "poll"])
async def test_an_unreachable_tenant_reaches_status_and_whoami(
        mode: str, sandbox: Sandbox, agent_env: dict[str, str], tmp_path: Path) -> None:
    env = {**agent_env, "AGENTSEAT_MODE": mode, "AGENTSEAT_TUNNEL": "loopback"}
    unreachable = {**env, "AGENTSEAT_AUTHORITY_HOST": f"https://127.0.0.1:{_closed_port()}"}
    async with serve(unreachable, tmp_path, "broken") as served:
        with anyio.fail_after(60):  # detected when the runtime first needs a token
            while (await served.call_json("status")).get("ready") is not False:
                await anyio.sleep(0.05)
        await _assert_not_ready(served, "cannot reach the authority", "AGENTSEAT_AUTHORITY_HOST")

    async with serve(env, tmp_path, "fixed") as served:
        await _assert_ready(served, sandbox)


async def test_serve_without_setup_exits_0_when_the_host_goes(tmp_path: Path) -> None:
    """Not 78 (EX_CONFIG) any more: the host sees an answered handshake, then a clean exit."""
    env = {"AGENTSEAT_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": PACKAGE_ROOT,
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-m", "agentseat.cli", "serve"], env=env, cwd=tmp_path,
                                       input=(json.dumps(hello) + "\n").encode(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    [answer] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert answer["result"]["capabilities"]["experimental"] == {"claude/channel": {}}
    assert done.stderr.decode().splitlines()[0].count("serve_not_ready") == 1
