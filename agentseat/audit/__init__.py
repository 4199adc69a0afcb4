"""The audit trail: an append-only, hash-chained log of what the agent did outside itself and
of every refusal by a gate, so that a changed or removed row is detectable.

`AuditLog` (chain.py) keeps `audit.db` in the state dir; `commands.py` is
`agentseat audit tail|verify|export`.
"""

from .chain import AuditLog, Broken

__all__ = ["AuditLog", "Broken"]
