"""The Agent User's mailbox and Teams presence are waited for independently: Teams works
while the mailbox is still being provisioned, and mail follows, exactly once, when it is."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.subscriptions import readiness as readiness_module
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, control, upn, wait_for
from tests.subscriptions._lifecycle import CREATE, requests


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    return SandboxOptions(behaviour={"mailbox_ready_after_seconds": 3600})


@asynccontextmanager
async def runtime(env: dict[str, str], **overrides: str) -> AsyncIterator[Running]:
    settings = settings_from_env({**env, "AGENTSEAT_RECONCILE_SECONDS": "86400",
                                  **{f"AGENTSEAT_{k.upper()}": v for k, v in overrides.items()}})
    running = Running(Runtime(settings))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: running.runtime.run([running.sink], task_status=task_status))
        try:
            yield running
        finally:
            tg.cancel_scope.cancel()


def _status(env: dict[str, str]) -> str:
    out = io.StringIO()
    status(settings_from_env(env), out)
    return out.getvalue()


async def _mail(sandbox: Sandbox, subject: str) -> str:
    sent = await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                         "to": upn(sandbox, "agent_user"), "subject": subject, "body": "the body"})
    return str(sent["message_id"])


async def _dm(sandbox: Sandbox, text: str) -> str:
    sent = await control(sandbox, "POST", "/_sandbox/messages", {"from": upn(sandbox, "sponsor"),
                         "to": upn(sandbox, "agent_user"), "text": text})
    return str(sent["message_id"])


async def test_teams_works_while_the_mailbox_waits_and_mail_follows_exactly_once(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness_module, "FIRST_RETRY_SECONDS", 0.3)
    monkeypatch.setattr(readiness_module, "MAX_RETRY_SECONDS", 0.6)
    # Teams is provisioned already; the mailbox is not (an hour from ready).
    sandbox.portal.call(sandbox.provisioning.finish, sandbox.role("agent_user"), "teams")  # type: ignore[attr-defined]
    async with runtime(agent_env, mode="webhook") as running:
        rt = running.runtime
        facts = rt.facts
        await wait_for(lambda: facts.get("mailbox") == "not_ready" and facts.get("teams") == "ready")
        await wait_for(lambda: rt.manager is not None and rt.manager.states["teams"].state == "active"
                       and rt.manager.states["mail"].state == "refused")
        early_mail = await _mail(sandbox, "sent while the mailbox was not there")
        dm = await _dm(sandbox, "teams works meanwhile")
        await wait_for(lambda: any(e.message_id == dm for e in running.events))
        assert not any(e.message_id == early_mail for e in running.events)
        shown = _status(agent_env)
        assert "mailbox not ready yet" in shown and "retrying at" in shown
        assert "tenant:         mailbox = not_ready" in shown and "tenant:         teams = ready" in shown

        creates = requests(sandbox, CREATE)
        await control(sandbox, "POST", "/_sandbox/behaviour", {"mailbox_ready_after_seconds": 0})
        await wait_for(lambda: facts.get("mailbox") == "ready")
        await wait_for(lambda: rt.manager.states["mail"].state == "active")
        assert requests(sandbox, CREATE) == creates + 1  # asked again at once, not after the backoff
        await wait_for(lambda: any(e.message_id == early_mail for e in running.events))  # the gap is read
        late_mail = await _mail(sandbox, "sent once it was there")
        await wait_for(lambda: any(e.message_id == late_mail for e in running.events))
        warnings = facts.snapshot()["warnings"]
        assert "readiness.mailbox" not in warnings and "subscription.mail" not in warnings
    ids = [e.message_id for e in running.events]
    assert sorted(ids) == sorted({dm, early_mail, late_mail}) and len(ids) == 3
    assert "mailbox = ready" in _status(agent_env)


async def test_poll_mode_keeps_polling_mail_while_the_mailbox_is_not_there(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness_module, "FIRST_RETRY_SECONDS", 0.3)
    monkeypatch.setattr(readiness_module, "MAX_RETRY_SECONDS", 0.6)
    async with runtime(agent_env, mode="poll", tunnel="none", chat_poll_seconds="1", mail_poll_seconds="1") as running:
        rt = running.runtime
        await wait_for(lambda: rt.facts.get("mailbox") == "not_ready" and rt.facts.get("teams") == "not_ready")
        await wait_for(lambda: rt.poller.counters.errors >= 4)  # each part's 404/403, round after round
        rounds = rt.poller.counters.mail_rounds
        mail = await _mail(sandbox, "polled once there")
        await control(sandbox, "POST", "/_sandbox/behaviour", {"mailbox_ready_after_seconds": 0})
        await wait_for(lambda: any(e.message_id == mail for e in running.events))
        assert rt.poller.counters.mail_rounds > rounds
        await wait_for(lambda: rt.facts.get("mailbox") == "ready" and rt.facts.get("teams") == "ready")
