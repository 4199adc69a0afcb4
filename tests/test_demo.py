"""`agentseat demo` as a user runs it: one command, no tenant, exit 0, every step printed with its latency."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from agentseat.sandbox.tenant import load_tenant

STEPS = [
    r"^✓ sandbox tenant contoso\.test serving on https://localhost:\d+  \(",
    r"^✓ agent provisioned by `agentseat setup` \(applied \d+ change\(s\)\): .* sponsor Ada Lovelace  \(",
    r"^✓ `agentseat serve` connected over MCP stdio: claude/channel capability, \d+ tools  \(",
    r"^✓ runtime in webhook mode on loopback \(http://127\.0\.0\.1:\d+\), subscribed to: mail, teams  \(",
    r'^✓ sponsor Ada Lovelace → agent: "Hi! Can you summarise the report\?"  channel push after [\d.]+ m?s$',
    r'^✓ agent → Ada Lovelace with send_teams_message: ".+"  in the sponsor\'s chat after [\d.]+ m?s$',
    r'^✓ Grace Hopper → agent: ".+"  held, not pushed; the agent replied with pairing code [A-Z0-9]{6} after ',
    r'^✓ sponsor Ada Lovelace → agent: "approve [A-Z0-9]{6}" \(confirmed through Graph\): Grace Hopper\'s held '
    r'message pushed after [\d.]+ m?s$',
    r'^✓ mail from Grace Hopper → agent: "Budget figures for Q3"  channel push after [\d.]+ m?s$',
    r'^✓ agent → Grace Hopper with reply_email: "RE: Budget figures for Q3"  in her inbox after [\d.]+ m?s$',
    r"^demo complete: 10 steps passed",
]


def test_demo_runs_the_whole_loop_and_exits_zero(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSEAT_")}
    result = subprocess.run([sys.executable, "-m", "agentseat.cli", "demo", "--dir", str(directory)], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for pattern in STEPS:
        assert any(re.search(pattern, line) for line in lines), f"no line matches {pattern!r}:\n{result.stdout}"
    # stdout is the tour and nothing else: no log line slipped in.
    allowed = ("✓ ", "    the agent sees: ", "agentseat demo: ", "demo complete: ")
    assert all(line.startswith(allowed) or not line for line in lines), result.stdout

    # What the lines claim happened in the tenant, as the sandbox stored it.
    tenant = load_tenant(directory / "sandbox")
    assert tenant is not None
    agent_id, sponsor_id = tenant.roles["agent_user"], tenant.roles["sponsor"]
    [chat] = [c for c in tenant.chats.values() if set(c.member_ids) == {agent_id, sponsor_id}]
    senders = [m.from_id for m in tenant.messages[chat.id]]
    assert senders == [sponsor_id, agent_id, sponsor_id, agent_id]  # the DM, the reply, `approve CODE`, its answer
    assert tenant.messages[chat.id][3].content.startswith("Approved Grace Hopper")
    grace = tenant.roles["colleague1"]
    [paired] = [c for c in tenant.chats.values() if set(c.member_ids) == {agent_id, grace}]
    assert [m.from_id for m in tenant.messages[paired.id]] == [grace, agent_id]  # her DM, the one code reply
    assert [m.subject for m in tenant.mail[grace] if m.folder == "inbox"] == ["RE: Budget figures for Q3"]
