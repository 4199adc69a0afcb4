"""`sandbox.env`: every AGENTSEAT_* setting a runtime needs to use this tenant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from .state import SandboxState


def sandbox_settings(sb: SandboxState) -> dict[str, str]:
    tenant = sb.tenant
    agent = tenant.users[sb.role("agent_user")]
    sponsor = tenant.users[sb.role("sponsor")]
    return {
        "AGENTSEAT_TENANT_ID": tenant.tenant_id,
        "AGENTSEAT_AUTHORITY_HOST": sb.url,
        "AGENTSEAT_GRAPH_URL": sb.graph_url,
        "AGENTSEAT_JWKS_URL": f"{sb.url}/common/discovery/v2.0/keys",
        "AGENTSEAT_CA_BUNDLE": str(sb.pki.ca_path),
        "AGENTSEAT_PROVISIONER_APP_ID": sb.role("provisioner"),
        "AGENTSEAT_PROVISIONER_CERT_PATH": str(sb.pki.directory / "provisioner.crt.pem"),
        "AGENTSEAT_PROVISIONER_KEY_PATH": str(sb.pki.directory / "provisioner.key.pem"),
        "AGENTSEAT_AGENT_USER_UPN": agent.upn,
        "AGENTSEAT_SPONSORS": sponsor.upn,
        "AGENTSEAT_SANDBOX_URL": sb.url,
        **_eventhub_settings(sb),
    }


def _eventhub_settings(sb: SandboxState) -> dict[str, str]:
    """The emulated Event Hubs namespace (eventhubs/): a runtime in `--mode eventhub` reads these.
    Its TLS certificate is signed by the sandbox CA, so `AGENTSEAT_CA_BUNDLE` (above) verifies it too."""
    hubs = getattr(sb, "eventhubs", None)
    if hubs is None or not hubs.port:
        return {}
    return {
        "AGENTSEAT_EVENTHUB_NAMESPACE": hubs.namespace.fqdn,
        "AGENTSEAT_EVENTHUB_NAME": next(iter(hubs.namespace.hubs), ""),
        "AGENTSEAT_EVENTHUB_ENDPOINT": hubs.endpoint,
    }


def write_sandbox_env(sb: SandboxState) -> Path:
    lines = ["# Written by `agentseat sandbox`: settings for a runtime using this sandbox tenant."]
    lines += [f"{k}={v}" for k, v in sandbox_settings(sb).items()]
    path = sb.env_path
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
