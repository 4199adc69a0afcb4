"""Issue 11, variant 8: notifications that never come. Against the real sandbox, whose faults
drop every notification: the reconcile counts what no notification delivered, `status` warns,
and the warning clears when notifications flow again. A restart with messages sent while no
runtime ran raises nothing."""

from __future__ import annotations

import io
from pathlib import Path


import anyio

from agentseat.runtime.app import Runtime
from agentseat.runtime.delivery_watch import WARNING_KEY
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, _dm, control, env, wait_for  # noqa: F401 (env: fixture)


def _status(env: dict[str, str]) -> str:
    out = io.StringIO()
    status(settings_from_env(env), out)
    return out.getvalue()


def _runtime(env: dict[str, str]) -> Running:
    runtime = Runtime(settings_from_env(env))
    # Graph's documented allowance is minutes (1 for chat, 3 for mail); the sandbox delivers in
    # milliseconds, so the test waits for none, and counts from the moment coverage starts.
    runtime.delivery.allowance = {"teams": 0.0, "mail": 0.0}
    runtime.delivery.skew = 0.0
    return Running(runtime)


async def test_messages_never_notified_are_counted_and_warned_about_until_notifications_flow(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    running = _runtime(env)
    runtime = running.runtime
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "webhook")
        assert runtime.describe()["missed_notifications"] == 0
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        for i in range(3):
            await _dm(sandbox, f"colleague{1 + i % 2}", f"lost {i}")
        await runtime.poller.resync("teams", "timer")  # the daily reconcile, now
        await wait_for(lambda: len(running.events) == 3)
        assert sorted(e.text for e in running.events) == ["lost 0", "lost 1", "lost 2"]  # found, once each
        await wait_for(lambda: runtime.describe()["missed_notifications"] == 3)
        assert runtime.describe()["delivery"]["by_kind"] == {"teams": 3}
        shown = _status(env)
        assert "webhook delivery looks broken: 3 messages found by reconcile but never notified" in shown
        assert "missed_notifications = 3" in shown
        await control(sandbox, "DELETE", "/_sandbox/faults")
        await _dm(sandbox, "colleague1", "flowing again")
        await wait_for(lambda: "flowing again" in [e.text for e in running.events])
        await wait_for(lambda: WARNING_KEY not in runtime.facts.snapshot()["warnings"])
        assert runtime.describe()["missed_notifications"] == 3  # the count stays for its window
        tg.cancel_scope.cancel()
    assert "webhook delivery looks broken" not in _status(env)


async def test_a_resync_graph_asked_for_or_two_misses_raise_no_warning(sandbox: Sandbox, env: dict[str, str]) -> None:
    running = _runtime(env)
    runtime = running.runtime
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "webhook")
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        await _dm(sandbox, "colleague1", "lost 0")
        await runtime.poller.resync("teams", "missed")  # Graph said so: not a silent failure
        await _dm(sandbox, "colleague2", "lost 1")
        await _dm(sandbox, "colleague1", "lost 2")
        await runtime.poller.resync("teams", "timer")
        await wait_for(lambda: len(running.events) == 3)
        await wait_for(lambda: runtime.describe()["missed_notifications"] == 2)
        assert WARNING_KEY not in runtime.facts.snapshot()["warnings"]  # under the threshold of 3
        tg.cancel_scope.cancel()


async def test_a_restart_with_messages_sent_while_down_is_no_false_alarm(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    first = _runtime(env)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: first.runtime.run([first.sink], task_status=task_status))
        await wait_for(lambda: first.runtime.status.source == "webhook")
        tg.cancel_scope.cancel()
    for i in range(4):  # nobody listens: Graph's deliveries fail, the next start must find them
        await _dm(sandbox, f"colleague{1 + i % 2}", f"while down {i}")
    second = _runtime(env)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: second.runtime.run([second.sink], task_status=task_status))
        await wait_for(lambda: len([e for e in second.events if e.text.startswith("while down")]) == 4)
        await second.runtime.poller.resync("teams", "timer")
        assert second.runtime.describe()["missed_notifications"] == 0
        assert WARNING_KEY not in second.runtime.facts.snapshot()["warnings"]
        tg.cancel_scope.cancel()
    assert "missed_notifications = 0" in _status(env)
