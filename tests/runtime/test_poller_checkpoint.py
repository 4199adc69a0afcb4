"""A chat round cut short by a restart keeps what it read.

Found by the soak (bench/soak.py): chat watermarks were saved only when a round
over every chat completed. Three runtimes in a row were killed or stopped while
their startup round read a backlog, so all that reading was lost, and the fifth
process read about 8,000 messages again (228 s at Graph's one request per second
per chat) before the dropped notifications of the last minutes were recovered.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.poller import Poller
from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import _dm

CHAT_READS = "GET /chats/{chat_id}/messages"


class Killed(Exception):
    """The process dies here."""


async def test_chats_read_before_a_restart_are_not_read_again(sandbox: Sandbox, agent_settings: Any) -> None:
    runtime = Runtime(agent_settings)
    try:
        poller = runtime.poller
        await poller.sync_chats("startup")  # the first round: nothing yet, its starting point is kept
        await _dm(sandbox, "colleague1", "one")
        await _dm(sandbox, "colleague2", "two")

        read_chat = poller._read_chat
        reads = 0

        async def read_then_die(*args: Any) -> int:
            nonlocal reads
            reads += 1
            if reads == 2:
                raise Killed  # the second chat's read never finishes
            return await read_chat(*args)

        poller._read_chat = read_then_die  # type: ignore[method-assign]
        with pytest.raises(Killed):
            await poller.sync_chats("timer")

        # The next process knows only what the inbox holds.
        restarted = Poller(runtime.settings, runtime.graph, runtime.inbox, runtime.policy)
        before = sandbox.stats.requests[CHAT_READS]
        await restarted.sync_chats("startup")
        assert sandbox.stats.requests[CHAT_READS] - before == 1  # only the chat the dead round did not finish
        assert sorted(e.text for e in runtime.inbox.read(0)) == ["one", "two"]
    finally:
        await runtime.aclose()
