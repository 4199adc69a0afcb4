"""The Agent User's mailbox and Teams presence answer as not provisioned for a while
(behaviour `mailbox_ready_after_seconds`), with Graph's real error shapes."""

from __future__ import annotations

import pytest

from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.tenant import TEAMS_SKU_ID
from tests.runtime.test_runtime import control
from tests.sandbox._directory_client import graph, provisioner, user

MAILBOX = {"code": "MailboxNotEnabledForRESTAPI",
           "message": "The mailbox is either inactive, soft-deleted, or is hosted on-premise."}
TEAMS_403 = ("Failed to get license information for the user. Ensure user has a valid Office365 license assigned "
             "to them.")


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    return SandboxOptions(behaviour={"mailbox_ready_after_seconds": 3600})


def _error(body: dict) -> dict:
    return {k: body["error"][k] for k in ("code", "message")}


async def test_the_agents_mail_routes_answer_404_mailbox_not_enabled_until_it_is_ready(sandbox: Sandbox) -> None:
    agent = user(sandbox, "agent_user")
    agent_id = sandbox.role("agent_user")
    for path in ("/me/messages", "/me/mailFolders/inbox/messages", "/me/mailFolders/inbox/messages/delta",
                 f"/users/{agent_id}/messages"):
        status, body = await graph(sandbox, "GET", path, agent)
        assert (status, _error(body)) == (404, MAILBOX), path
    # People with a mailbox for years are not affected.
    assert (await graph(sandbox, "GET", "/me/messages", user(sandbox, "sponsor")))[0] == 200

    await control(sandbox, "POST", "/_sandbox/behaviour", {"mailbox_ready_after_seconds": 0})
    assert (await graph(sandbox, "GET", "/me/messages", agent))[0] == 200


async def test_the_agents_teams_routes_answer_403_without_licence_information(sandbox: Sandbox) -> None:
    agent = user(sandbox, "agent_user")
    for path in ("/me/chats", f"/users/{sandbox.role('agent_user')}/chats"):
        status, body = await graph(sandbox, "GET", path, agent)
        assert status == 403 and body["error"]["code"] == "Forbidden", path
        assert body["error"]["message"] == TEAMS_403
    assert (await graph(sandbox, "GET", "/me/chats", user(sandbox, "sponsor")))[0] == 200


async def test_subscriptions_on_an_unprovisioned_part_are_refused_as_graph_wraps_it(sandbox: Sandbox) -> None:
    agent = user(sandbox, "agent_user")
    base = {"changeType": "created", "notificationUrl": "https://example.org/n", "clientState": "x",
            "expirationDateTime": "2099-01-01T00:00:00Z"}
    status, body = await graph(sandbox, "POST", "/subscriptions", agent,
                               {**base, "resource": "/me/mailFolders('inbox')/messages"})
    assert status == 404 and body["error"]["code"] == "ExtensionError"
    assert "REST API is not yet supported for this mailbox" in body["error"]["message"]
    status, body = await graph(sandbox, "POST", "/subscriptions", agent,
                               {**base, "resource": f"/users/{sandbox.role('agent_user')}/chats/getAllMessages"})
    assert status == 403 and body["error"]["code"] == "ExtensionError"
    assert TEAMS_403 in body["error"]["message"]


@pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour={"mailbox_ready_after_seconds": 0})])
async def test_a_new_licence_starts_provisioning_over(sandbox: Sandbox) -> None:
    agent, agent_id, token = user(sandbox, "agent_user"), sandbox.role("agent_user"), provisioner(sandbox)
    assert (await graph(sandbox, "GET", "/me/messages", agent))[0] == 200
    await control(sandbox, "POST", "/_sandbox/behaviour", {"mailbox_ready_after_seconds": 3600})
    # Created long enough ago (the sandbox's start is the demo agent's creation) ... until licensed again.
    sandbox.portal.call(lambda: sandbox.provisioning._started.update({agent_id: 0.0}))  # type: ignore[attr-defined]
    assert (await graph(sandbox, "GET", "/me/messages", agent))[0] == 200
    assert (await graph(sandbox, "PATCH", f"/users/{agent_id}", token, {"usageLocation": "US"}))[0] == 204
    sandbox.portal.call(lambda: sandbox.tenant.users[agent_id].licenses.clear())  # type: ignore[attr-defined]
    add = {"addLicenses": [{"skuId": TEAMS_SKU_ID, "disabledPlans": []}], "removeLicenses": []}
    assert (await graph(sandbox, "POST", f"/users/{agent_id}/assignLicense", token, add))[0] == 200
    status, body = await graph(sandbox, "GET", "/me/messages", agent)
    assert (status, _error(body)) == (404, MAILBOX)
