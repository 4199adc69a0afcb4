"""The audit trail sees the access gate: a held stranger is a refusal, the terminal's approval
an action, and the code the agent sent is an outward message; the chain verifies."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agentseat.audit import AuditLog
from agentseat.sandbox.app import Sandbox
from tests.access.test_pairing import CODE, access_cli, held_texts, ready, wait_agent_lines
from tests.runtime.test_runtime import upn, wait_for
from tests.tools._mcp import post_dm


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_INBOUND_POLICY": "pairing"}


async def test_a_held_stranger_and_the_approval_are_in_the_audit_log(sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, agent = upn(sandbox, "colleague1"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        first = await post_dm(sandbox, grace, agent, "let me in")
        [reply] = await wait_agent_lines(sandbox, first["chat_id"], 1)
        await wait_for(lambda: held_texts(running) == ["let me in"])
        code = CODE.search(reply)
        assert code is not None
        rc, _ = await access_cli(env, "approve", code.group(1))
        assert rc == 0
        await wait_for(lambda: len(running.events) == 1)
        tg.cancel_scope.cancel()
    log = AuditLog(Path(env["AGENTSEAT_STATE_DIR"]) / "audit.db")
    try:
        rows = log.rows()
        assert log.verify() == (len(rows), None)
    finally:
        log.close()
    actions = [(r["kind"], r["action"]) for r in rows]
    held = actions.index(("refusal", "access_held"))
    assert actions.index(("action", "teams_send")) > held  # the code, after the hold
    assert ("action", "access_approve") in actions  # from the terminal, in another process
    assert rows[held]["detail"]["chat_id"] == first["chat_id"] and "let me in" not in str(rows)
