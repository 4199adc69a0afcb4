"""Two machines of one agent share the hub through Blob checkpoints on Azurite: the SDK splits the
partitions, one machine (the lease holder) manages the subscriptions, each message is stored on
exactly one machine, and when the manager stops the other takes over its lease and partitions."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.eventhub.conftest import Azurite
from tests.runtime.test_runtime import Running, _dm, control, wait_for


@pytest.fixture
async def machines(sandbox: Sandbox, agent_env: dict[str, str], azurite: Azurite,
                   tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    shared = {**agent_env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_TUNNEL": "none",
              "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"], "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"],
              "AGENTSEAT_EVENTHUB_ENDPOINT": info["endpoint"],
              "AGENTSEAT_CHECKPOINT_STORE": await azurite.container_sas_url("checkpoints"),
              # Short intervals so the test sees a takeover in seconds (the defaults bound it to ~70 s).
              "AGENTSEAT_EVENTHUB_BALANCE_SECONDS": "1", "AGENTSEAT_EVENTHUB_OWNERSHIP_SECONDS": "4"}
    second = tmp_path / "machine-b"
    second.mkdir(mode=0o700)
    shutil.copytree(Path(agent_env["AGENTSEAT_STATE_DIR"]) / "keys", second / "keys")  # the same agent
    return shared, {**shared, "AGENTSEAT_STATE_DIR": str(second), "AGENTSEAT_CONFIG_FILE": str(second / "x.env")}


async def start(tg: anyio.abc.TaskGroup, env: dict[str, str]) -> Running:
    runtime = Runtime(settings_from_env(env))
    running = Running(runtime)
    await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
    return running


def owned(running: Running) -> set[str]:
    consumer = running.runtime.hub.consumer if running.runtime.hub else None
    return set() if consumer is None else {p for p, s in consumer.status.partitions.items() if s.owned}


async def test_two_machines_share_the_partitions_and_store_each_message_once(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:
    env_a, env_b = machines
    async with anyio.create_task_group() as outer:
        a = await start(outer, env_a)
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)  # a manages
        async with anyio.create_task_group() as inner:
            b = await start(inner, env_b)
            await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
            await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
            assert owned(a) | owned(b) == {"0", "1", "2", "3"}
            sent = [f"m{i}" for i in range(12)]
            for text in sent:
                await _dm(sandbox, "colleague1", text)
            both = lambda: Counter(e.text for e in a.events + b.events)  # noqa: E731
            await wait_for(lambda: set(both()) >= set(sent), timeout=90)
            assert all(n == 1 for n in both().values()), both()  # one machine handled each
            assert a.events and b.events  # both did their share
            assert len(sandbox.tenant.subscriptions) == 2  # the follower made none
            inner.cancel_scope.cancel()  # b stops; a keeps the lease and takes b's partitions
        await wait_for(lambda: len(owned(a)) == 4, timeout=60)
        await _dm(sandbox, "colleague1", "after b")
        await wait_for(lambda: any(e.text == "after b" for e in a.events), timeout=60)
        outer.cancel_scope.cancel()


def stored(running: Running) -> set[str]:
    return {e.text for e in running.runtime.inbox.read(0, 10_000)}


async def test_the_follower_takes_over_the_lease_when_the_manager_stops(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:
    env_a, env_b = machines
    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as inner:
            a = await start(inner, env_a)
            await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)
            b = await start(outer, env_b)
            await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
            await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
            sent = {f"shared {i}" for i in range(8)}
            for text in sorted(sent):
                await _dm(sandbox, "colleague1", text)
            await wait_for(lambda: stored(a) | stored(b) >= sent, timeout=60)
            by_a = stored(a) & sent
            assert by_a  # a stored its partitions' share
            inner.cancel_scope.cancel()  # the manager stops (its lease is released)
        await wait_for(lambda: b.runtime.status.source == "eventhub", timeout=60)  # after its startup duties
        # The subscriptions stayed live, so all they notified is in the hub: b does not read Graph from its
        # own old watermark, which would store what a stored a second time.
        assert not stored(b) & by_a
        await wait_for(lambda: len(owned(b)) == 4, timeout=60)
        await _dm(sandbox, "sponsor", "to the new manager")
        await wait_for(lambda: any(e.text == "to the new manager" for e in b.events), timeout=60)
        assert len(sandbox.tenant.subscriptions) == 2  # adopted, not duplicated
        outer.cancel_scope.cancel()
