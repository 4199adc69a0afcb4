"""A refused subscription is never final: a lifetime above the tenant's maximum is asked
again at once with the maximum Graph names; anything else is asked again on a backoff,
and `agentseat status` says why it was refused and when it is tried next."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from agentseat.errors import GraphError
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.subscriptions import manager as manager_module
from agentseat.subscriptions.refusals import backoff_seconds, max_minutes, not_provisioned
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import control
from tests.subscriptions._lifecycle import CREATE, PATCH, live, requests, running, wait_for


def _status(env: dict[str, str]) -> str:
    out = io.StringIO()
    status(settings_from_env(env), out)
    return out.getvalue()


class TestReadingRefusals:
    def test_the_maximum_is_read_from_graphs_words(self) -> None:
        exc = GraphError("Subscription expiration can only be 60 minutes in the future.", status=400,
                         code="ExtensionError")
        assert max_minutes(exc) == 60
        assert max_minutes(GraphError("Subscription expiration can only be 60 minutes in the future.",
                                      status=403, code="ExtensionError")) is None
        assert max_minutes(GraphError("Invalid request", status=400, code="InvalidRequest")) is None

    def test_unprovisioned_parts_are_told_apart_from_other_refusals(self) -> None:
        assert not_provisioned(GraphError("The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                                          status=404, code="MailboxNotEnabledForRESTAPI")) == "mailbox"
        assert not_provisioned(GraphError("Operation: Create; Exception: [Status Code: NotFound; Reason: REST API "
                                          "is not yet supported for this mailbox.]", status=404,
                                          code="ExtensionError")) == "mailbox"
        assert not_provisioned(GraphError("Failed to get license information for the user. Ensure user has a "
                                          "valid Office365 license assigned to them.", status=403,
                                          code="Forbidden")) == "teams"
        assert not_provisioned(GraphError("Missing scope permissions", status=403, code="Forbidden")) is None
        assert not_provisioned(GraphError("The object was not found.", status=404, code="ResourceNotFound")) is None

    def test_the_backoff_doubles_from_30_seconds_to_at_most_an_hour(self) -> None:
        assert [backoff_seconds(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
        assert backoff_seconds(1000) == 3600


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    return SandboxOptions(behaviour={"chat_subscription_max_minutes": 60})


async def test_a_chat_lifetime_above_the_maximum_is_asked_again_with_the_maximum_graph_names(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        state = rt.manager.states["teams"]
        assert state.state == "active" and state.refusals == 0
        sub = live(sandbox, "teams")
        granted = sub.expiration - sandbox.clock.now()
        assert 55 * 60 < granted <= 60 * 60
        assert rt.runtime.facts.get("chat_subscription_max_minutes") == 60
        assert rt.manager.status()["teams"]["minutes"] == 60
        # Renewed within the maximum too (at half life: 30 minutes left of 60 is due).
        patches = requests(sandbox, PATCH)
        await rt.manager.renew("teams", reason="test")
        assert requests(sandbox, PATCH) == patches + 1
        assert 55 * 60 < live(sandbox, "teams").expiration - sandbox.clock.now() <= 60 * 60
        assert "subscription.teams" not in rt.runtime.facts.snapshot()["warnings"]
    assert "chat_subscription_max_minutes = 60" in _status(agent_env)

    # The next run knows the maximum: it asks for it at once and is not refused again.
    creates = requests(sandbox, CREATE)
    sandbox.portal.call(lambda: sandbox.tenant.subscriptions.clear())  # type: ignore[attr-defined]
    async with running(agent_env) as rt:
        assert rt.manager.states["teams"].state == "active"
    assert requests(sandbox, CREATE) == creates + 2  # teams and mail, once each


async def test_a_refusal_is_retried_on_a_backoff_and_status_says_why_and_when(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "RETRY_CREATE_SECONDS", 0.5)
    monkeypatch.setattr(manager_module, "MIN_CHECK_SECONDS", 0.2)
    async with running(agent_env, graph_deadline_seconds="1") as rt:
        old = live(sandbox, "mail")
        await control(sandbox, "POST", "/_sandbox/faults",
                      {"graph": [{"route": CREATE, "rate": 1.0, "status": 503, "retry_after": 0.05}]})
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{old.id}/remove")
        state = rt.manager.states["mail"]
        await wait_for(lambda: state.refusals >= 2)  # refused, and refused again after the backoff
        assert state.state == "refused" and "503" in state.error
        assert state.retry_at > datetime.now(UTC).timestamp() - 5
        warning = rt.runtime.facts.snapshot()["warnings"]["subscription.mail"]["message"]
        assert "mail subscription refused" in warning and "503" in warning and "retrying at" in warning
        shown = _status(agent_env)
        assert "mail subscription refused" in shown and "retrying at" in shown
        assert "mail: refused" in shown and "retry at" in shown
        await control(sandbox, "DELETE", "/_sandbox/faults")

        await wait_for(lambda: state.state == "active")
        assert live(sandbox, "mail").id == state.id != old.id
        assert state.refusals == 0
        assert "subscription.mail" not in rt.runtime.facts.snapshot()["warnings"]
