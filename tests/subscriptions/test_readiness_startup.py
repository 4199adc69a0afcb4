"""A startup that subscribes asks Graph no readiness probe: creating the subscriptions answers it.

Graph accepts a subscription on the mailbox or the chats only once that part of the Agent
User is provisioned, so the probes (GET of one inbox message, GET /me/chats) would only
repeat what the subscriptions just said. The Teams probe costs most: the startup read of the
chats lists them again and must stay one second behind it (one GET /me/chats per second per
user, throttling-limits, Teams service limits), which delays the first event by that second.
"""

from __future__ import annotations

import anyio

from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, control, upn, wait_for
from tests.subscriptions._lifecycle import CHAT_LIST, CREATE, requests

MAIL_PROBE = "GET /me/mailFolders/{folder_id}/messages"


async def test_a_webhook_startup_lists_the_chats_once_and_probes_nothing(sandbox: Sandbox,
                                                                          agent_env: dict[str, str]) -> None:
    settings = settings_from_env({**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_RECONCILE_SECONDS": "86400"})
    running = Running(Runtime(settings))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: running.runtime.run([running.sink], task_status=task_status))
        sent = await control(sandbox, "POST", "/_sandbox/messages", {"from": upn(sandbox, "sponsor"),
                             "to": upn(sandbox, "agent_user"), "text": "the first event after a start"})
        facts, status = running.runtime.facts, running.runtime.status
        await wait_for(lambda: any(e.message_id == sent["message_id"] for e in running.events))
        await wait_for(lambda: status.source == "webhook")  # subscribed, the gap read, channels subscribed
        assert facts.get("teams") == "ready" and facts.get("mailbox") == "ready"
        assert requests(sandbox, CREATE) == 2
        assert requests(sandbox, CHAT_LIST) == 1  # the startup read alone, no probe before it
        assert requests(sandbox, MAIL_PROBE) == 0
        tg.cancel_scope.cancel()


async def test_a_startup_that_polls_instead_probes_both_parts(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    # auto mode without a tunnel polls: no subscription will answer, so the held probes run at once
    # (not after HOLD_SECONDS) and the tenant facts say both parts are there.
    settings = settings_from_env({**agent_env, "AGENTSEAT_MODE": "auto", "AGENTSEAT_TUNNEL": "none",
                                  "AGENTSEAT_RECONCILE_SECONDS": "86400"})
    running = Running(Runtime(settings))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: running.runtime.run([running.sink], task_status=task_status))
        facts = running.runtime.facts
        await wait_for(lambda: facts.get("teams") == "ready" and facts.get("mailbox") == "ready", timeout=10)
        assert requests(sandbox, MAIL_PROBE) == 1 and requests(sandbox, CREATE) == 0
        tg.cancel_scope.cancel()
