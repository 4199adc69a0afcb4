"""What of an accepted Graph write enters the audit log: the action, never the body.

A message is named by its kind and a digest of its text (record/classify.py reads it);
anything else by method and route (a share, a member added, a file written, a chat made).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..record.classify import outbound
from .chain import AuditLog

__all__ = ["observer"]


def observer(audit: AuditLog) -> Any:
    """A GraphClient observer appending one `action` row per accepted write."""

    def observe(method: str, route: str, sent: Any, returned: Any) -> None:
        said = outbound(method, route, sent, returned)
        if said is not None:
            audit.append("action", f"{said.medium}_{said.action}", chat_id=said.chat_id or None,
                         message_id=said.message_id or None, recipients=list(said.recipients) or None,
                         digest=hashlib.sha256(said.text.encode("utf-8")).hexdigest())
            return
        if route.startswith("/subscriptions"):
            return  # the runtime's own plumbing (renewals), not an action on anyone's data
        audit.append("action", "graph_write", method=method.upper(), route=route.split("?", 1)[0])

    return observe
