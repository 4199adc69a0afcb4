"""Test helpers for drives: files put in place through the control API, and tokens by role."""

from __future__ import annotations

import base64
from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call

AGENT, ADA, GRACE, ALAN = "agent@contoso.test", "ada@contoso.test", "grace@contoso.test", "alan@contoso.test"


def token(sb: Sandbox, upn: str, scopes: list[str] | None = None) -> str:
    user = sb.tenant.user(upn)
    assert user is not None
    return user_graph_token(sb, user.id, scopes)


async def put_file(sb: Sandbox, owner: str, path: str, content: bytes, **extra: Any) -> dict[str, Any]:
    """`POST /_sandbox/files`; returns {drive_id, item_id, web_url, sharing_url}."""
    status, body, _ = await call(sb, "POST", "/_sandbox/files", body={
        "owner": owner, "path": path, "content_base64": base64.b64encode(content).decode(), **extra})
    assert status == 201, body
    return dict(body)
