"""Validation-token audience variants (issue 11, variant 1) against the real sandbox.

Which `aud` Graph puts in the validation tokens of an Agent Identity's delegated
subscription is not documented: the Agent Identity's app id, its Blueprint's, or no
tokens at all. Under each, a DM must be stored exactly once (read from Graph when
the tokens do not verify), the claims seen must become the `validation_tokens`
tenant fact, a wrong clientState must still be dropped, and the fallback reads
must stay under their cap with the excess left to a resync.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.token_fallback import TokenFallbacks
from agentseat.runtime.verify import TokenReport
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.tenant_facts import TenantFacts
from tests.conftest import settings_from_env
from tests.runtime._forge import item, subscription
from tests.runtime.test_runtime import Running, control, upn, wait_for

#: behaviour value -> (the fact's "audience", the fallback reason, or None when the tokens verify)
VARIANTS: dict[str, tuple[str, str | None]] = {
    "agent_identity": ("agent_identity", None),
    "blueprint": ("blueprint", "token_blueprint_audience"),
    "none": ("missing", "token_missing_tokens"),
}


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    # No periodic reconcile during a test: what arrives, arrives through the webhook.
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_RECONCILE_SECONDS": "86400"}


async def started(tg: anyio.abc.TaskGroup, env: dict[str, str], *, per_minute: int | None = None) -> Running:
    runtime = Runtime(settings_from_env(env))
    if per_minute is not None:  # before it runs: the pipeline takes the budget when webhooks start
        runtime.token_fallbacks = TokenFallbacks(facts=runtime.facts, per_minute=per_minute,
                                                 on_capped=runtime.poller.resync_soon)
    running = Running(runtime)
    await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
    await wait_for(lambda: runtime.status.source == "webhook")
    return running


async def dm(sandbox: Sandbox, text: str) -> dict[str, Any]:
    return await control(sandbox, "POST", "/_sandbox/messages",
                         {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": text})


def single_reads(sandbox: Sandbox) -> int:
    """GETs of one chat message by id (what a fallback costs), whichever path form was used."""
    return sum(n for route, n in sandbox.stats.requests.items()
               if route.startswith("GET ") and route.endswith("/messages/{message_id}"))


async def forge(sandbox: Sandbox, running: Running, posted: list[dict[str, Any]], *, client_state: str | None = None,
                tokens: Any = None) -> int:
    """POST items naming real messages on the runtime's Teams subscription, encrypted to the agent."""
    sub = subscription(sandbox, running.runtime, "teams")
    items = []
    for p in posted:
        resource = f"chats('{p['chat_id']}')/messages('{p['message_id']}')"
        one = item(sandbox, sub, resource, p["message_id"], {"id": p["message_id"], "chatId": p["chat_id"]})
        if client_state is not None:
            one["clientState"] = client_state
        items.append(one)
    async with aiohttp.ClientSession() as session, session.post(
            sub.notification_url, json={"value": items, "validationTokens": tokens}) as resp:
        return resp.status


@pytest.fixture(params=sorted(VARIANTS))
def audience(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)


@pytest.fixture
def sandbox_options(audience: str) -> SandboxOptions:
    return SandboxOptions(behaviour={"validation_token_audience": audience})


async def test_each_audience_variant_stores_the_dm_once_and_records_what_was_seen(
        audience: str, sandbox: Sandbox, env: dict[str, str]) -> None:
    expected_audience, fallback = VARIANTS[audience]
    async with anyio.create_task_group() as tg:
        running = await started(tg, env)
        runtime = running.runtime
        posted = await dm(sandbox, "are you there?")
        await wait_for(lambda: len(running.events) >= 1)
        await runtime.poller.resync("teams", "test")  # a reconcile finds the same message: still once
        [event] = [e for e in running.events if e.message_id == posted["message_id"]]
        assert len(running.events) == 1
        # Through the webhook (the reconcile is off): decrypted when verified, read from Graph otherwise.
        assert (event.source, event.text, event.trust) == ("webhook", "are you there?", "sponsor")
        seen = runtime.facts.get("validation_tokens")
        assert seen["audience"] == expected_audience
        notifications = runtime.describe()["notifications"]
        if fallback is None:
            assert notifications["token_fallbacks"] == 0 and notifications["tokens_verified"] >= 1
            assert seen["aud"] == runtime.settings.agent_id and seen["azp"] == runtime.settings.change_tracking_app_id
        else:
            assert notifications["token_fallbacks"] >= 1 and fallback in notifications["token_fallback_reasons"]
            assert set(notifications["token_fallback_reasons"]) == {fallback}
        if audience == "blueprint":
            assert seen["aud"] == runtime.settings.blueprint_app_id == sandbox.role("blueprint")
        if audience == "none":
            assert seen == {"audience": "missing"}  # nothing else is known without a token
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("audience", ["none"])
async def test_a_wrong_client_state_is_still_dropped_while_the_right_one_falls_back(
        audience: str, sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await started(tg, env)
        runtime = running.runtime
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        posted = await dm(sandbox, "only Graph knows this one")  # in Graph, never notified
        reads = single_reads(sandbox)
        assert await forge(sandbox, running, [posted], client_state="guessed") == 202
        # The pipeline runs before the 202: the drop is counted, and no read was queued.
        assert runtime.webhook is not None and runtime.webhook.stats.dropped["client_state_mismatch"] == 1
        assert runtime.token_fallbacks.counters["token_fallbacks"] == 0
        assert await forge(sandbox, running, [posted]) == 202  # the real clientState, no tokens
        assert runtime.token_fallbacks.counters["token_fallbacks"] == 1
        await wait_for(lambda: len(running.events) >= 1)
        [event] = running.events
        assert (event.message_id, event.source, event.text) == (posted["message_id"], "webhook",
                                                                 "only Graph knows this one")
        assert single_reads(sandbox) == reads + 1
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("audience", ["agent_identity"])
async def test_fallback_reads_stop_at_the_cap_and_the_rest_comes_from_a_resync(
        audience: str, sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await started(tg, env, per_minute=2)
        runtime = running.runtime
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        posted = [await dm(sandbox, f"message {i}") for i in range(5)]
        reads = single_reads(sandbox)
        assert await forge(sandbox, running, posted) == 202  # no tokens: all five would fall back
        counters = runtime.token_fallbacks.counters
        assert (counters["token_fallbacks"], counters["token_fallbacks_capped"]) == (2, 3)
        # Nothing is lost: the capped ones are left to one resync of Teams, which lists them.
        await wait_for(lambda: {e.message_id for e in running.events} >= {p["message_id"] for p in posted})
        assert sorted(e.text for e in running.events) == [f"message {i}" for i in range(5)]
        assert single_reads(sandbox) - reads <= 2
        assert runtime.describe()["notifications"]["token_fallbacks_capped"] == 3
        tg.cancel_scope.cancel()


# --- the budget and the fact, alone (a hand-driven clock) ----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_is_per_kind_and_opens_again_a_minute_later() -> None:
    clock, capped = Clock(), []
    budget = TokenFallbacks(per_minute=2, on_capped=lambda kind, why: capped.append((kind, why)), clock=clock)
    assert [budget.admit("teams", "token_missing_tokens") for _ in range(3)] == [True, True, False]
    assert budget.admit("mail", "token_missing_tokens")  # mail has its own budget
    assert capped == [("teams", "token_fallback_capped")]
    clock.now += 59.9
    assert not budget.admit("teams", "token_missing_tokens")
    clock.now += 0.1
    assert budget.admit("teams", "token_missing_tokens")
    assert budget.snapshot()["token_fallbacks_capped"] == 2 and budget.snapshot()["token_fallbacks"] == 4


def test_the_fact_keeps_signed_claims_only_and_is_not_rewritten_on_every_post(tmp_path: Path) -> None:
    clock, facts = Clock(), TenantFacts(tmp_path)
    budget = TokenFallbacks(facts=facts, clock=clock)
    budget.observe(TokenReport("bad_signature", None))  # nothing signed: a sender's word, not a fact
    assert facts.get("validation_tokens") is None
    seen = {"audience": "blueprint", "aud": "b1ee", "iss": "https://login.microsoftonline.com/t/v2.0",
            "azp": "0bf30f3b-4a52-48df-9a82-234910c4a086", "ver": "2.0"}
    budget.observe(TokenReport("blueprint_audience", seen))
    assert facts.get("validation_tokens") == seen
    budget.observe(TokenReport("missing_tokens", {"audience": "missing"}))  # within 10 s of the last write
    assert facts.get("validation_tokens") == seen
    clock.now += 10
    budget.observe(TokenReport("missing_tokens", {"audience": "missing"}))
    assert facts.get("validation_tokens") == {"audience": "missing"}
    assert budget.snapshot()["tokens_failed"] == 4
