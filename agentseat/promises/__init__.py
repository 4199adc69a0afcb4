"""Promises the agent makes: what, in which chat, due when; open until resolved.

`parse_due` (due.py) reads `due` (ISO, `in 2 hours`, `tomorrow 9:00`) in the sponsor's time
zone; `Promises` (store.py) keeps them in `promises.db`; the runtime's clock
(agentseat/clock) turns a due one into a `reminder` event; tools.py is the MCP surface.
"""

from .due import parse_due
from .store import Promise, Promises

__all__ = ["Promise", "Promises", "parse_due"]
