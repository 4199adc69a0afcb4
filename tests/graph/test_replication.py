"""Replication delays (graph/replication.py): a refusal that may only mean "not replicated yet"
is ridden through inside the window, and is final at once where it cannot mean that.

The sandbox's faults answer the next N calls of a route with 403 or 404, as Graph does until a
grant or object has replicated; retries are proved by the sandbox's request counters and the
client's log lines, never by timing.
"""

from __future__ import annotations

import io

import anyio
import pytest

from agentseat.config import Settings
from agentseat.errors import GraphError, NotFoundError, TokenError
from agentseat.graph.client import GraphClient
from agentseat.graph.replication import ReplicationGrace, call_kind
from agentseat.identity.keys import KeyStore
from agentseat.identity.tokens import TokenProvider
from agentseat.sandbox.app import Sandbox
from tests.graph.test_client import _events, control, logs, provider_for  # noqa: F401 - logs is a fixture


def _fault(sandbox: Sandbox, route: str, status: int, count: int) -> None:
    control(sandbox, "POST", "/_sandbox/faults", {"graph": [{"route": route, "status": status, "count": count}]})


def _own(settings: Settings, grace: float = 300) -> ReplicationGrace:
    return ReplicationGrace(grace, own_ids=(settings.agent_user_id, settings.agent_user_upn))


def test_a_kind_of_call_is_what_a_permission_covers() -> None:
    assert call_kind("GET", "/me/chats/19:abc@thread.v2/messages") == "read /me/chats/{}/messages"
    assert call_kind("PATCH", "/me/messages/AAMk-1") == call_kind("DELETE", "/me/messages/AAMk-2")
    assert call_kind("POST", "/subscriptions", {"resource": "/me/messages"}) != call_kind(
        "POST", "/subscriptions", {"resource": "/me/chats/getAllMessages"})


async def test_a_403_before_the_grant_replicates_is_retried_until_it_works(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    _fault(sandbox, "GET /me/chats", 403, 2)
    control(sandbox, "DELETE", "/_sandbox/stats")
    async with GraphClient(agent_settings, provider_for(agent_settings), replication=_own(agent_settings)) as graph:
        chats = await graph.get("/me/chats")
    assert "value" in chats
    assert control(sandbox, "GET", "/_sandbox/stats")["requests"]["GET /me/chats"] == 3
    waits = _events(logs, "graph_replication_wait")
    assert [w["status"] for w in waits] == [403, 403] and "grant" in waits[0]["reason"]


async def test_a_403_on_a_call_that_already_worked_is_final_at_once(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    async with GraphClient(agent_settings, provider_for(agent_settings), replication=_own(agent_settings)) as graph:
        await graph.get("/me/chats")  # the grant is visible: a refusal from now on is a revocation
        _fault(sandbox, "GET /me/chats", 403, 5)
        control(sandbox, "DELETE", "/_sandbox/stats")
        with pytest.raises(GraphError) as caught:
            await graph.get("/me/chats")
    assert caught.value.status == 403 and "setup --grant" in str(caught.value)
    assert control(sandbox, "GET", "/_sandbox/stats")["requests"]["GET /me/chats"] == 1
    assert _events(logs, "graph_replication_wait") == []


async def test_without_a_window_a_403_is_final_at_once(sandbox: Sandbox, agent_settings: Settings) -> None:
    _fault(sandbox, "GET /me/chats", 403, 5)
    async with GraphClient(agent_settings, provider_for(agent_settings),
                           replication=_own(agent_settings, grace=0)) as graph:
        with pytest.raises(GraphError) as caught:
            await graph.get("/me/chats")
    assert caught.value.status == 403
    assert control(sandbox, "GET", "/_sandbox/stats")["requests"]["GET /me/chats"] == 1


async def test_a_refusal_that_outlasts_the_window_surfaces_with_a_clear_error(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    _fault(sandbox, "GET /me/chats", 403, 1000)  # a permission that was really revoked
    async with GraphClient(agent_settings, provider_for(agent_settings),
                           replication=_own(agent_settings, grace=2)) as graph:
        with pytest.raises(GraphError) as caught:
            await graph.get("/me/chats")
    assert caught.value.status == 403
    assert "after waiting for replication" in str(caught.value) and "setup --grant" in str(caught.value)
    assert 1 <= len(_events(logs, "graph_replication_wait")) < 5


async def test_a_404_on_the_agents_own_fresh_user_is_retried_and_one_on_anyone_else_is_not(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    other = sandbox.role("colleague1")
    async with GraphClient(agent_settings, provider_for(agent_settings), replication=_own(agent_settings)) as graph:
        _fault(sandbox, "GET /users/{user_id}", 404, 2)
        me = await graph.get(f"/users/{agent_settings.agent_user_id}")
        assert me["id"] == agent_settings.agent_user_id
        _fault(sandbox, "GET /users/{user_id}", 404, 1)
        control(sandbox, "DELETE", "/_sandbox/stats")
        with pytest.raises(NotFoundError):
            await graph.get(f"/users/{other}")
        # The agent's own user was seen by Graph: a 404 on it from now on is real too.
        _fault(sandbox, "GET /users/{user_id}", 404, 1)
        with pytest.raises(NotFoundError):
            await graph.get(f"/users/{agent_settings.agent_user_id}")
    assert control(sandbox, "GET", "/_sandbox/stats")["requests"]["GET /users/{user_id}"] == 2
    assert [w["status"] for w in _events(logs, "graph_replication_wait")] == [404, 404]


async def test_a_token_chain_waits_for_consent_to_replicate_then_works(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    from tests.sandbox._agent import grant_agent_consent

    grants = dict(sandbox.tenant.grants)
    sandbox.portal.call(sandbox.tenant.grants.clear)  # type: ignore[attr-defined]
    store = KeyStore(agent_settings)
    provider = TokenProvider(agent_settings, lambda: store.load_pem_credential(agent_settings.cert_thumbprint or None),
                             replication=_own(agent_settings))  # as Runtime builds it

    async def consent_arrives() -> None:
        while not _events(logs, "token_replication_wait"):
            await anyio.sleep(0.02)
        for grant in grants.values():
            grant_agent_consent(sandbox, grant.scope.split(), user_id=grant.principal_id,
                                client_app_id=grant.client_app_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consent_arrives)
        token = await provider.get()
    assert token
    waits = _events(logs, "token_replication_wait")
    assert waits and {w["code"] for w in waits} == {"AADSTS65001"} and waits[0]["hop"] == "hop3:agent_user"


async def test_a_token_error_that_outlasts_the_window_is_final_and_says_so(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    sandbox.portal.call(sandbox.tenant.grants.clear)  # type: ignore[attr-defined]
    store = KeyStore(agent_settings)
    provider = TokenProvider(agent_settings, lambda: store.load_pem_credential(agent_settings.cert_thumbprint or None),
                             # Long enough that the first attempt ends inside it on a loaded CI machine.
                             replication=_own(agent_settings, grace=5))
    with pytest.raises(TokenError) as caught:
        await provider.get()
    assert caught.value.code == "AADSTS65001" and "replication grace" in str(caught.value)
    assert "agentseat setup --grant" in str(caught.value)
    # Whether a wait fits depends on how long the first attempt took (a loaded machine may
    # need the whole window for it); the final error says the grace was spent either way.


def test_a_window_that_closes_during_the_first_attempt_still_names_the_grace() -> None:
    now = [0.0]
    grace = ReplicationGrace(5, clock=lambda: now[0])
    now[0] = 6.0  # the first token request took longer than the whole window
    assert grace.token_reason("graph", "AADSTS65001") is None
    assert grace.outlasted("graph", "AADSTS65001")
    assert not grace.outlasted("graph", "AADSTS700027x")  # not a replication code
    assert not ReplicationGrace(0, clock=lambda: now[0]).outlasted("graph", "AADSTS65001")  # no grace at all
    worked = ReplicationGrace(5, clock=lambda: now[0])
    worked.token_succeeded("graph")
    now[0] = 20.0
    assert not worked.outlasted("graph", "AADSTS65001")  # it worked once: a refusal now is a real one


async def test_a_revoked_certificate_after_a_token_worked_is_final_at_once(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    store = KeyStore(agent_settings)
    provider = TokenProvider(agent_settings, lambda: store.load_pem_credential(agent_settings.cert_thumbprint or None),
                             replication=_own(agent_settings))
    token = await provider.get()
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")]
    sandbox.portal.call(blueprint.key_credentials.clear)  # type: ignore[attr-defined]
    await provider.invalidate(token)  # as after Graph's 401
    with pytest.raises(TokenError) as caught:
        await provider.get()
    assert caught.value.code == "AADSTS700027"
    assert _events(logs, "token_replication_wait") == []


async def test_an_unprovisioned_mailbox_or_teams_is_not_taken_for_replication(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    # Licensing can take hours (Entra, "agent users"): the readiness probe waits for it, so the
    # client must hand these refusals back at once instead of spending its window on them.
    control(sandbox, "POST", "/_sandbox/behaviour", {"mailbox_ready_after_seconds": 3600})
    control(sandbox, "DELETE", "/_sandbox/stats")
    async with GraphClient(agent_settings, provider_for(agent_settings), replication=_own(agent_settings)) as graph:
        with pytest.raises(NotFoundError) as mail:
            await graph.get(f"/users/{agent_settings.agent_user_id}/messages", **{"$top": "1"})
        with pytest.raises(GraphError) as teams:
            await graph.get("/me/chats")
    assert mail.value.code == "MailboxNotEnabledForRESTAPI" and teams.value.status == 403
    requests = control(sandbox, "GET", "/_sandbox/stats")["requests"]
    assert requests["GET /users/{user_id}/messages"] == 1 and requests["GET /me/chats"] == 1
    assert _events(logs, "graph_replication_wait") == []
