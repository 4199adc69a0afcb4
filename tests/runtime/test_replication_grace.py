"""A runtime started right after setup meets grants, keys and objects that have not replicated
yet (issue 11, variant 4): it rides through their refusals instead of calling them final, and a
refusal that lasts past the window still surfaces as one.
"""

from __future__ import annotations

import anyio

from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import control, env, start, upn, wait_for  # noqa: F401 - env is a fixture


async def test_subscriptions_refused_until_the_grant_replicates_are_made_not_given_up(
        sandbox: Sandbox, env: dict[str, str]) -> None:  # noqa: F811
    # Graph refuses the first subscription requests with 403, as it does before a new grant replicates.
    await control(sandbox, "POST", "/_sandbox/faults", {"graph": [{"route": "POST /subscriptions", "status": 403,
                                                                   "count": 2}]})
    async with anyio.create_task_group() as tg:
        running = await start(tg, env, mode="auto")
        await wait_for(lambda: running.runtime.status.source == "webhook", timeout=60)
        described = running.runtime.describe()
        assert {k: s["state"] for k, s in described["subscriptions"].items()} == {"teams": "active", "mail": "active"}
        assert described["polling"] == []
        stats = await control(sandbox, "GET", "/_sandbox/stats")
        assert stats["throttled"]["fault 403"] == 2 and stats["requests"]["POST /subscriptions"] == 4
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "after the wait"})
        await wait_for(lambda: any(e.text == "after the wait" for e in running.events))
        assert [e.source for e in running.events if e.text == "after the wait"] == ["webhook"]
        tg.cancel_scope.cancel()


async def test_a_grant_missing_past_the_window_is_still_reported_as_refused(
        sandbox: Sandbox, env: dict[str, str]) -> None:  # noqa: F811
    from tests.sandbox._agent import grant_agent_consent

    sandbox.portal.call(lambda: sandbox.tenant.grants.clear())  # type: ignore[attr-defined]
    grant_agent_consent(sandbox, ["User.Read", "User.ReadBasic.All", "Chat.ReadWrite", "ChatMessage.Send"])
    async with anyio.create_task_group() as tg:
        running = await start(tg, env, mode="auto", replication_grace_seconds="2")
        await wait_for(lambda: running.runtime.status.source == "webhook+poll", timeout=60)
        mail = running.runtime.describe()["subscriptions"]["mail"]
        assert mail["state"] == "refused" and "403" in mail["error"]
        tg.cancel_scope.cancel()
