"""Progress of long tool work (an upload), told to whoever is waiting for it.

A tool call that carries an MCP progress token gets `notifications/progress` for it
(MCP "Progress" utility); the tool layer installs the reporter for the duration of the
call, and the code doing the work only calls `report`, knowing nothing of MCP. Outside a
call with a token, `report` does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

log = structlog.get_logger(__name__)

Reporter = Callable[[float, float | None, str], Awaitable[None]]
_current: ContextVar[Reporter | None] = ContextVar("agentseat_progress", default=None)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Within the block, `report` goes to `reporter` (None: nowhere)."""
    token = _current.set(reporter)
    try:
        yield
    finally:
        _current.reset(token)


async def report(done: float, total: float | None, message: str) -> None:
    """Tell the waiting caller how far the work is; never fails the work itself."""
    reporter = _current.get()
    if reporter is None:
        return
    try:
        await reporter(done, total, message)
    except Exception as exc:  # a host that went away must not break an upload
        log.debug("progress_not_sent", error=type(exc).__name__)
