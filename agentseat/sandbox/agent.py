"""A working agent on the sandbox without `agentseat setup`, for tests and benchmarks.

`agentseat setup` provisions through Graph like a real tenant; this is the short
path: the certificate appended to the demo Blueprint and delegated consent granted
directly in the tenant. Call `register_agent` on the sandbox's own event loop.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING

from .envfile import sandbox_settings
from .pki import sha1_thumbprint_hex
from .tenant import AGENT_SCOPES, Grant, KeyCredential

if TYPE_CHECKING:
    from .state import SandboxState


def register_agent(sb: SandboxState, der: bytes, *, display_name: str = "agent certificate") -> dict[str, str]:
    """Append the certificate (DER) to the Blueprint, grant consent, and return the
    AGENTSEAT_* identity and endpoint settings a runtime for that agent needs."""
    now = sb.clock.now()
    sb.tenant.apps[sb.role("blueprint")].key_credentials.append(KeyCredential(
        key_id=str(uuid.uuid4()), sha1=sha1_thumbprint_hex(der), cert_der_b64=base64.b64encode(der).decode(),
        start=now - 86400, end=now + 365 * 86400, display_name=display_name))
    grant = Grant(id=str(uuid.uuid4()), client_app_id=sb.role("agent_identity"), principal_id=sb.role("agent_user"),
                  scope=" ".join(AGENT_SCOPES))
    sb.tenant.grants[grant.id] = grant
    sb.mark_dirty()
    settings = {k: v for k, v in sandbox_settings(sb).items() if k != "AGENTSEAT_SANDBOX_URL"}
    return settings | {
        "AGENTSEAT_BLUEPRINT_APP_ID": sb.role("blueprint"),
        "AGENTSEAT_AGENT_ID": sb.role("agent_identity"),
        "AGENTSEAT_AGENT_OBJECT_ID": sb.tenant.apps[sb.role("agent_identity")].sp_object_id,
        "AGENTSEAT_AGENT_USER_ID": sb.role("agent_user"),
        "AGENTSEAT_CERT_THUMBPRINT": sha1_thumbprint_hex(der),
    }
