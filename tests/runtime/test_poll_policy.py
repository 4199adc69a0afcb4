"""Issue 11, variant 9: poll mode reads Teams no faster than its floor, and `status` says that
Microsoft asks apps not to poll Teams, pointing to webhooks (real sandbox, real runtime)."""

from __future__ import annotations

import io

import anyio

from agentseat.runtime.poll_policy import CHAT_POLL_FLOOR_SECONDS, POLICY_KEY
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import start, upn, control, wait_for


def _status(env: dict[str, str]) -> str:
    out = io.StringIO()
    status(settings_from_env(env), out)
    return out.getvalue()


async def test_a_chat_interval_below_the_floor_is_raised_and_status_says_why(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, agent_env, mode="poll", tunnel="none", chat_poll_seconds="1", mail_poll_seconds="1")
        await wait_for(lambda: running.runtime.poller.counters.chat_rounds >= 1)
        poller = running.runtime.describe()["poller"]
        assert poller["chat_interval"] == CHAT_POLL_FLOOR_SECONDS and poller["mail_interval"] == 1.0
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "colleague2"), "to": upn(sandbox, "agent_user"), "text": "polled"})
        await wait_for(lambda: any(e.text == "polled" for e in running.events))  # still delivered
        tg.cancel_scope.cancel()
    shown = _status(agent_env)
    assert "AGENTSEAT_CHAT_POLL_SECONDS=1 is below the 5 s floor" in shown
    assert "Polling requirements" in shown and "--mode webhook" in shown and f"[{POLICY_KEY}," in shown


async def test_webhooks_covering_teams_clear_the_polling_warning(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        await start(tg, agent_env, mode="poll", tunnel="none")
        await wait_for(lambda: POLICY_KEY in _status(agent_env))
        tg.cancel_scope.cancel()
    assert "polling Teams every 10 s" in _status(agent_env)  # the default interval, above the floor
    async with anyio.create_task_group() as tg:
        running = await start(tg, agent_env, mode="webhook")
        await wait_for(lambda: running.runtime.status.source == "webhook")
        tg.cancel_scope.cancel()
    assert POLICY_KEY not in _status(agent_env)
