"""The Blueprint's typed certificate routes (agentidentityblueprint-addkey, -removekey, -update) and
the `blueprint_key_route` behaviour, over real HTTPS."""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox, SandboxOptions
from tests.sandbox._directory_client import Cert, app_with, graph, new_blueprint, provisioner
from tests.sandbox.test_graph_directory_apps import _keys, _proof

TYPED = "microsoft.graph.agentIdentityBlueprint"


BLUEPRINT_ONLY = pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour={
    "blueprint_key_route": "blueprint_only"})])


async def _blueprint_with(sb: Sandbox, cert: Cert) -> dict[str, Any]:
    """A Blueprint whose first certificate came in through the typed PATCH (agentidentityblueprint-update)."""
    bp = await new_blueprint(sb, "typed")
    status, body = await graph(sb, "PATCH", f"/applications/{bp['id']}/{TYPED}", provisioner(sb),
                               {"keyCredentials": [cert.credential()]})
    assert status == 204, body
    return bp


async def _add(sb: Sandbox, path: str, bp: dict[str, Any], signer: Cert, new: Cert, token: str | None = None) -> Any:
    return await graph(sb, "POST", path, token or provisioner(sb), {
        "keyCredential": new.credential(), "passwordCredential": None, "proof": _proof(signer, bp["id"])})


@BLUEPRINT_ONLY
async def test_blueprint_only_serves_keys_on_the_typed_routes_and_404s_the_generic_ones(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _blueprint_with(sandbox, first)
    status, body = await _add(sandbox, f"/applications/{bp['id']}/addKey", bp, first, second)
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"
    status, added = await _add(sandbox, f"/applications/{bp['id']}/{TYPED}/addKey", bp, first, second)
    assert status == 200 and added["customKeyIdentifier"] == second.sha1
    first_id = (await _keys(sandbox, bp["id"]))[0]["keyId"]
    removal = {"keyId": first_id, "proof": _proof(second, bp["id"])}
    status, _ = await graph(sandbox, "POST", f"/applications/{bp['id']}/removeKey", provisioner(sandbox), removal)
    assert status == 404
    status, _ = await graph(sandbox, "POST", f"/applications/{bp['id']}/{TYPED}/removeKey", provisioner(sandbox),
                            removal)
    assert status == 204
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [second.sha1]


async def test_both_is_the_default_and_serves_either_route_alike(sandbox: Sandbox) -> None:
    first, second, third = Cert("first"), Cert("second"), Cert("third")
    bp = await _blueprint_with(sandbox, first)
    assert (await _add(sandbox, f"/applications/{bp['id']}/addKey", bp, first, second))[0] == 200
    status, _ = await _add(sandbox, f"/applications(appId='{bp['appId']}')/{TYPED}/addKey", bp, first, third)
    assert status == 200
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [first.sha1, second.sha1, third.sha1]


async def test_typed_routes_need_the_blueprint_permissions_and_a_blueprint(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _blueprint_with(sandbox, first)
    # agentidentityblueprint-addkey: AgentIdentityBlueprint.AddRemoveCreds.All (least) or .ReadWrite.All.
    status, _ = await _add(sandbox, f"/applications/{bp['id']}/{TYPED}/addKey", bp, first, second,
                           app_with(sandbox, "Application.ReadWrite.All"))
    assert status == 403
    status, _ = await _add(sandbox, f"/applications/{bp['id']}/{TYPED}/addKey", bp, first, second,
                           app_with(sandbox, "AgentIdentityBlueprint.AddRemoveCreds.All"))
    assert status == 200
    provisioner_app = sandbox.tenant.apps[sandbox.role("provisioner")]
    status, _ = await graph(sandbox, "PATCH", f"/applications/{provisioner_app.object_id}/{TYPED}",
                            provisioner(sandbox), {"keyCredentials": []})
    assert status == 404, "an ordinary application is not a Blueprint"
