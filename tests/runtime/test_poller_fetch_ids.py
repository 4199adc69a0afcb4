"""Ids named by a notification are one path segment of the Graph request, never a path.

Found by the attack corpus (bench/attack.py): a basic mail notification with
the right clientState and the id `../../users` made the runtime GET /users with
the agent's token, and the id `..` made it GET /me and store the agent's own
profile as a mail event.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.errors import GraphError
from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import _dm, control, upn


@pytest.mark.parametrize("message_id", ["..", ".", "../../users", "x/../../../me", "x?$select=id"])
async def test_a_message_id_cannot_steer_the_fetch(sandbox: Sandbox, agent_settings: Any, message_id: str) -> None:
    runtime = Runtime(agent_settings)
    try:
        before = dict(sandbox.stats.requests)
        try:
            stored = await runtime.poller.fetch_mail(message_id)
        except GraphError as exc:  # Graph says no such message; what matters is where we asked
            assert exc.status in (400, 404)
            stored = 0
        assert stored == 0 and runtime.inbox.count() == 0
        asked = {route for route, n in sandbox.stats.requests.items() if n != before.get(route, 0)}
        assert asked <= {"GET /me/messages/{message_id}"}, asked
    finally:
        await runtime.aclose()


async def test_real_ids_are_still_fetched(sandbox: Sandbox, agent_settings: Any) -> None:
    runtime = Runtime(agent_settings)
    try:
        mail = await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                             "to": upn(sandbox, "agent_user"), "subject": "s", "body": "mail body"})
        chat = await _dm(sandbox, "colleague2", "chat text")
        assert await runtime.poller.fetch_mail(mail["message_id"]) == 1
        assert await runtime.poller.fetch_chat_message(chat["chat_id"], chat["message_id"]) == 1
        assert sorted(e.text for e in runtime.inbox.read(0)) == ["chat text", "mail body"]
    finally:
        await runtime.aclose()
