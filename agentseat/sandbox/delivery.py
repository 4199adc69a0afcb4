"""Placeholder for the notification delivery engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from .app import Sandbox


class DeliveryEngine:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()
