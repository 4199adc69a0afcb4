"""The sandbox starts on loopback HTTPS, writes sandbox.env and keeps its tenant."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

from agentseat.sandbox.app import Sandbox, SandboxOptions


def _get(sb: Sandbox, path: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(sb.pki.ca_path))
    try:
        with urllib.request.urlopen(sb.url + path, context=ctx) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_sandbox_env_names_ca_bundle_and_endpoints(sandbox: Sandbox) -> None:
    env = dict(
        line.split("=", 1) for line in sandbox.env_path.read_text().splitlines() if line and not line.startswith("#")
    )
    assert Path(env["AGENTSEAT_CA_BUNDLE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert env["AGENTSEAT_GRAPH_URL"] == sandbox.url + "/v1.0"
    assert env["AGENTSEAT_TENANT_ID"] == sandbox.tenant.tenant_id
    assert sandbox.url.startswith("https://localhost:")


def test_graph_without_token_is_401_in_graph_shape(sandbox: Sandbox) -> None:
    status, body = _get(sandbox, "/v1.0/me")
    assert status == 401
    assert b'"InvalidAuthenticationToken"' in body and b'"innerError"' in body


def test_tenant_survives_restart_and_reset_starts_afresh(sandbox: Sandbox, tmp_path: Path) -> None:
    tenant_id = sandbox.tenant.tenant_id
    sandbox.flush()
    again = Sandbox(sandbox.state_dir)
    assert again.tenant.tenant_id == tenant_id
    fresh = Sandbox(sandbox.state_dir, SandboxOptions(reset=True))
    assert fresh.tenant.tenant_id != tenant_id
