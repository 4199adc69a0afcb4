"""A channel sink in its own OS process that dies by SIGKILL at a chosen point (tests/tools/test_channel_ack.py).

Usage: python _channel_child.py DB before_ack
  Pushes the first claimed batch (each message id on stdout, flushed), then kills itself
  when the sink makes the claim that would acknowledge that batch: a crash after the
  pushes and before their acknowledgement, with no `finally` run.
"""

from __future__ import annotations

import os
import signal
import sys
from types import SimpleNamespace
from typing import Any

import anyio

from agentseat.logging import configure
from agentseat.runtime.inbox import Inbox
from agentseat.tools.channel import ChannelSink


class DiesBeforeAck(Inbox):
    def _claim_in(self, conn: Any, group: str, claimant: str, limit: int, alive: Any, ack: Any) -> Any:
        if list(ack):
            os.kill(os.getpid(), signal.SIGKILL)  # the acknowledging claim never commits
        return super()._claim_in(conn, group, claimant, limit, alive, ack)


async def main(db: str) -> None:
    configure(level="warning")
    inbox = DiesBeforeAck(db)
    sink = ChannelSink(batch=3)  # claimant host:pid, as in `agentseat serve`

    async def push(params: dict[str, Any]) -> None:
        sys.stdout.write(params["meta"]["message_id"] + "\n")
        sys.stdout.flush()

    sink.attach(push)
    await sink(SimpleNamespace(inbox=inbox))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
