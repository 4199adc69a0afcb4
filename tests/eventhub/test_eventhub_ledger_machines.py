"""Two machines share a hub, and the manager's reconcile runs when the runtime's clock says: it reads
from Graph every DM of the chat, including those the other machine stored from its partitions, and
skips those (the other's ledger of stored keys in the Blob container), so no message is stored on both.

Also measured (printed, not asserted): how long a key the follower stored stays out of its ledger,
the window in which a resync could still store it a second time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from statistics import mean

import anyio

from agentseat.eventhub.client import ledger_container
from agentseat.eventhub.ledger import PREFIX
from agentseat.sandbox.app import Sandbox
from tests.channels._sandbox import AGENT, GRACE, make_team, post
from tests.conftest import settings_from_env
from tests.eventhub.test_eventhub_machines import machines, owned, start, stored  # noqa: F401 (a fixture)
from tests.runtime.test_runtime import Running, _dm, upn, wait_for


def _ledger(running: Running) -> dict:
    hub = running.runtime.hub
    return (hub.consumer.describe().get("ledger") or {}) if hub and hub.consumer else {}


def _flushed(running: Running) -> bool:
    return _ledger(running).get("flushed_seq", -1) >= running.runtime.inbox.latest_seq()


async def _flush_lag(env: dict[str, str], running: Running) -> list[float]:
    """Seconds from each message's arrival on `running` to the flush of the blob that holds its key."""
    container = ledger_container(settings_from_env({"AGENTSEAT_CHECKPOINT_STORE": env["AGENTSEAT_CHECKPOINT_STORE"]}),
                                 None)
    flushed: dict[str, float] = {}
    async with container:
        async for blob in container.list_blobs(name_starts_with=f"{PREFIX}{_ledger(running)['machine_id']}/"):
            stamp = blob.name.rsplit("/", 1)[1].removesuffix(".json")
            at = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC).timestamp()
            body = json.loads(await (await container.download_blob(blob.name)).readall())
            flushed.update(dict.fromkeys(body["keys"], at))
    events = running.runtime.inbox.read(0, 10_000)
    return [flushed[e.key] - datetime.fromisoformat(e.received_at).timestamp() for e in events if e.key in flushed]


async def test_the_managers_reconcile_skips_what_the_other_machine_stored(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:  # noqa: F811
    env_a, env_b = machines
    moved = timedelta()
    async with anyio.create_task_group() as tg:
        a = await start(tg, env_a)
        a.runtime.clock.now = lambda: datetime.now(UTC) + moved
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)  # a manages
        b = await start(tg, env_b)
        await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
        await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
        sent = {f"split {i}" for i in range(12)}
        for text in sorted(sent):
            await _dm(sandbox, "colleague1", text)
        await wait_for(lambda: stored(a) | stored(b) >= sent, timeout=90)
        on_b = stored(b) & sent
        assert on_b and stored(a) & sent and not on_b & stored(a)  # split across the partitions, once each
        await wait_for(lambda: _flushed(b), timeout=30)  # b's ledger holds what it stored

        # The reconcile is due (AGENTSEAT_RECONCILE_SECONDS, a day by default): a reads the chat from Graph.
        moved = timedelta(days=1, minutes=1)
        a.runtime.clock.wake()
        poller = a.runtime.poller
        await wait_for(lambda: poller.counters.resync_skipped_other_machine >= len(on_b), timeout=60)
        await poller.resync("teams", "test")  # waits for the reconcile's chat round to end
        assert not stored(a) & stored(b) & sent  # no message stored on both machines
        assert poller.counters.by_reason.get("timer", 0) >= 1  # it was the clock's reconcile
        assert _ledger(a)["resync_skipped_other_machine"]["teams"] == len(on_b)
        assert a.runtime.describe()["poller"]["resync_skipped_other_machine"] == len(on_b)
        lag = await _flush_lag(env_b, b)
        assert len(lag) == len(on_b)
        print(f"\nledger window: {len(lag)} keys on the follower, visible to the manager "
              f"{min(lag):.2f}-{max(lag):.2f} s (mean {mean(lag):.2f} s) after they arrived; "
              f"{_ledger(b)['flushes']} flushes")

        # The window itself: a resync that reads right after new messages arrive, before the follower's next flush.
        late = {f"late {i}" for i in range(6)}
        for text in sorted(late):
            await _dm(sandbox, "colleague1", text)
        await wait_for(lambda: stored(a) | stored(b) >= late, timeout=60)
        arrived = anyio.current_time()
        await poller.resync("teams", "gap")
        twice = stored(a) & stored(b) & late
        print(f"a resync {anyio.current_time() - arrived:.2f} s after the last arrival, inside the follower's "
              f"flush interval: {len(twice)} of the {len(stored(b) & late)} messages it stored were stored twice")
        tg.cancel_scope.cancel()


def _channel_ids(running: Running) -> set[str]:
    return {e.message_id for e in running.runtime.inbox.read(0, 10_000) if e.kind == "channel"}


async def test_the_managers_channel_round_skips_posts_the_other_machine_stored(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:  # noqa: F811
    env_a, env_b = ({**env, "AGENTSEAT_GROUP_POLICY": "all"} for env in machines)
    team = await make_team(sandbox, "Shared team", GRACE, upn(sandbox, "agent_user"))
    async with anyio.create_task_group() as tg:
        a = await start(tg, env_a)
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)
        b = await start(tg, env_b)
        await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
        await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
        assert b.runtime.channel_manager is not None
        await wait_for(lambda: bool(b.runtime.channel_manager.covered()), timeout=60)
        asked = {await post(sandbox, GRACE, team, f"@{AGENT} question {i}", mentions=[AGENT]) for i in range(8)}
        await wait_for(lambda: _channel_ids(a) | _channel_ids(b) >= asked, timeout=90)
        on_b = _channel_ids(b) & asked
        assert on_b and not on_b & _channel_ids(a)
        await wait_for(lambda: _flushed(b), timeout=30)
        # The channels' full round (every reconcile interval, after a `missed`, after subscribing) on the manager.
        await a.runtime.channels.resync("timer")
        assert not _channel_ids(a) & _channel_ids(b) & asked
        assert _ledger(a)["resync_skipped_other_machine"]["channel"] == len(on_b)
        tg.cancel_scope.cancel()
