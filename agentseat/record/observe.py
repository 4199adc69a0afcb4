"""The GraphClient observer that records each message Graph accepted from the agent."""

from __future__ import annotations

from typing import Any

from .classify import outbound
from .store import Record

__all__ = ["observer"]


def observer(record: Record) -> Any:
    def observe(method: str, route: str, sent: Any, returned: Any) -> None:
        if (entry := outbound(method, route, sent, returned)) is not None:
            record.add(entry)

    return observe
