"""Who may reach the agent: the inbound policy, pairing codes, the allowlist and held messages.

`AccessPolicy` is the intake's gate; `AccessStore` is `access.db`; `commands` backs
`agentseat access` and lists held messages for `agentseat inbox`.
"""

from __future__ import annotations

from .commands import held_messages
from .policy import AccessPolicy, Decision
from .store import AccessError, AccessStore, Held, PendingCode, Person

__all__ = ["AccessError", "AccessPolicy", "AccessStore", "Decision", "Held", "PendingCode", "Person",
           "held_messages"]
