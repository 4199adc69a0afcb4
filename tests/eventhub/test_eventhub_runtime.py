"""The runtime in `--mode eventhub` against the sandbox's Event Hubs emulator, end to end.

Graph (the sandbox) delivers notifications into the emulated hub; the runtime reads it with the
real azure-eventhub SDK over AMQP/TLS on loopback, authenticating with the Agent User's Entra
token, and stores through the webhook's pipeline. Checkpoints live in the inbox database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
import anyio
import pytest

from agentseat.eventhub.status import META_KEY
from agentseat.eventhub.settings import notification_url
from agentseat.runtime.app import Runtime
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import Running, control, upn, wait_for
from tests.conftest import settings_from_env
from tests.eventhub.conftest import Azurite


@pytest.fixture
async def env(sandbox: Sandbox, agent_env: dict[str, str]) -> dict[str, str]:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    return {**agent_env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_TUNNEL": "none",
            "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"], "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"],
            "AGENTSEAT_EVENTHUB_ENDPOINT": info["endpoint"]}


async def start(tg: anyio.abc.TaskGroup, env: dict[str, str]) -> Running:
    runtime = Runtime(settings_from_env(env))
    running = Running(runtime)
    await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
    return running


async def hub_last_sequences(sandbox: Sandbox) -> dict[str, int]:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    return {str(p["id"] if "id" in p else p["partitionId"]): int(p["lastSequenceNumber"])
            for p in info["hubs"][0]["partitions"]}


def checkpoints(state_dir: Path) -> dict[str, int]:
    with sqlite3.connect(state_dir / "inbox.db") as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'eventhub_checkpoints'").fetchall():
            return {}  # the local store was never opened (a Blob store is configured)
        return {pid: seq for pid, seq in conn.execute("SELECT partition_id, sequence_number FROM eventhub_checkpoints")}


def _at_least(checkpointed: int | None, seq: int) -> bool:
    return checkpointed is not None and checkpointed >= seq


def caught_up(running: Running, last: dict[str, int]) -> bool:
    assert running.runtime.hub is not None and running.runtime.hub.consumer is not None
    parts = running.runtime.hub.consumer.status.partitions
    return all(seq < 0 or (pid in parts and _at_least(parts[pid].sequence_number, seq)) for pid, seq in last.items())


async def test_dm_and_mail_arrive_through_the_hub(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        await wait_for(lambda: running.runtime.status.source == "eventhub")
        subs = list(sandbox.tenant.subscriptions.values())
        assert len(subs) == 2
        for sub in subs:  # both URLs name the hub (change-notifications-delivery-event-hubs)
            assert sub.notification_url == sub.lifecycle_url == notification_url(running.runtime.settings)
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "through the hub"})
        await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                      "to": upn(sandbox, "agent_user"), "subject": "Hub", "body": "mail through the hub"})
        await wait_for(lambda: len(running.events) >= 2, timeout=60)
        got = sorted((e.kind, e.source, e.text) for e in running.events)
        assert got == [("mail", "eventhub", "mail through the hub"), ("teams", "eventhub", "through the hub")]
        consumer = running.runtime.hub.consumer
        assert consumer is not None and consumer.stats.accepted >= 2  # both notifications passed the pipeline
        assert consumer.stats.handshakes >= 2  # Graph's validation messages (one per URL at least), ignored
        assert not consumer.stats.dropped
        described = running.runtime.describe()["eventhub"]
        assert described["owned"] and described["checkpoint_store"] == "local"
        await wait_for(lambda: bool(checkpoints(running.runtime.settings.state_dir)))
        tg.cancel_scope.cancel()


async def test_restart_resumes_from_the_checkpoint_without_duplicates(
        sandbox: Sandbox, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = Path(env["AGENTSEAT_STATE_DIR"])
    async with anyio.create_task_group() as tg:
        first = await start(tg, env)
        await wait_for(lambda: first.runtime.status.source == "eventhub")
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "one"})
        await wait_for(lambda: len(first.events) >= 1, timeout=60)
        last = await hub_last_sequences(sandbox)
        await wait_for(lambda: caught_up(first, last), timeout=60)
        tg.cancel_scope.cancel()
    before = checkpoints(state_dir)
    assert before, "the first run checkpointed nothing"
    # While no runtime runs, Graph keeps delivering into the hub.
    await control(sandbox, "POST", "/_sandbox/messages",
                  {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "two"})
    for _ in range(300):
        after = await hub_last_sequences(sandbox)
        if sum(after.values()) > sum(last.values()):
            break
        await anyio.sleep(0.05)
    unread_since = sum(seq - before.get(pid, -1) for pid, seq in after.items())
    async with anyio.create_task_group() as tg:
        second = await start(tg, env)
        await wait_for(lambda: any(e.text == "two" for e in second.events), timeout=60)
        await wait_for(lambda: caught_up(second, after), timeout=60)
        consumer = second.runtime.hub.consumer
        assert consumer is not None
        # Resumed at the checkpoint: only the events after it were read again, not the hub from its start.
        assert consumer.stats.posts == unread_since
        status(second.runtime.settings)
        tg.cancel_scope.cancel()
    printed = capsys.readouterr().out
    assert "event hub:" in printed and "partitions owned by pid" in printed and "checkpoint at sequence number" in printed
    inbox = Inbox(state_dir / "inbox.db")
    try:
        texts = sorted(e.text for e in inbox.read(0, 100) if e.kind == "teams")
        assert texts == ["one", "two"]  # each once, whichever path stored it first
        assert inbox.get_meta(META_KEY) is not None
    finally:
        inbox.close()


async def test_a_sas_connection_string_reads_the_hub_instead_of_the_agent_token(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    async with anyio.create_task_group() as tg:
        running = await start(tg, {**env, "AGENTSEAT_EVENTHUB_CONNECTION_STRING": info["connectionString"]})
        await wait_for(lambda: running.runtime.status.source == "eventhub")
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "colleague2"), "to": upn(sandbox, "agent_user"), "text": "over SAS"})
        await wait_for(lambda: len(running.events) >= 1, timeout=60)
        assert [(e.source, e.text) for e in running.events] == [("eventhub", "over SAS")]
        # No Event Hubs token was asked of Entra: the SAS key signed the CBS put-token.
        assert "https://eventhubs.azure.net" not in running.runtime.tokens._cache  # noqa: SLF001
        tg.cancel_scope.cancel()


async def test_the_checkpoint_waits_until_a_named_message_is_read_and_stored(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    # Mail notifications carry no resource data, so the runtime reads each message from Graph:
    # the checkpoint past its notification must wait for that read and the store.
    runtime = Runtime(settings_from_env(env))
    read = runtime.poller.fetch_mail
    gate, reads = anyio.Event(), []

    async def gated(message_id: str, source: str = "webhook") -> int:
        reads.append(message_id)
        await gate.wait()
        return await read(message_id, source=source)

    runtime.poller.fetch_mail = gated  # type: ignore[method-assign]
    running = Running(runtime)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "eventhub")
        before = await hub_last_sequences(sandbox)
        await wait_for(lambda: caught_up(running, before), timeout=60)  # validation messages checkpointed
        await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                                                          "to": upn(sandbox, "agent_user"), "subject": "held", "body": "held"})
        after = {}
        for _ in range(600):
            after = await hub_last_sequences(sandbox)
            if after != before:
                break
            await anyio.sleep(0.05)
        [partition] = [p for p in after if after[p] != before[p]]
        await wait_for(lambda: bool(reads))  # the notification was processed and its read queued
        await anyio.sleep(0.5)  # ample time for a checkpoint that does not wait
        assert checkpoints(runtime.settings.state_dir).get(partition, -1) < after[partition]
        assert not running.events
        gate.set()
        await wait_for(lambda: len(running.events) == 1, timeout=60)
        await wait_for(lambda: checkpoints(runtime.settings.state_dir).get(partition, -1) == after[partition])
        assert running.events[0].source == "eventhub"
        tg.cancel_scope.cancel()


async def test_blob_checkpoints_on_azurite_with_a_sas_container_url(
        sandbox: Sandbox, env: dict[str, str], azurite: Azurite) -> None:
    url = await azurite.container_sas_url("checkpoints")
    async with anyio.create_task_group() as tg:
        running = await start(tg, {**env, "AGENTSEAT_CHECKPOINT_STORE": url})
        await wait_for(lambda: running.runtime.status.source == "eventhub")
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "blob"})
        await wait_for(lambda: len(running.events) >= 1, timeout=60)
        last = await hub_last_sequences(sandbox)
        await wait_for(lambda: caught_up(running, last), timeout=60)
        assert running.runtime.describe()["eventhub"]["checkpoint_store"] == "blob"
        tg.cancel_scope.cancel()
    assert not checkpoints(Path(env["AGENTSEAT_STATE_DIR"])), "the local store was used instead of Blob"
    # Read back with the SDK's own Blob store: what another machine would resume from.
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    account, _, query = url.partition("?")
    async with BlobCheckpointStore(f"{account.rsplit('/', 1)[0]}?{query}", "checkpoints") as store:
        info = await control(sandbox, "GET", "/_sandbox/eventhubs")
        found = {c["partition_id"]: c["sequence_number"] for c in
                 await store.list_checkpoints(info["namespace"], info["hubs"][0]["name"], "$Default")}
        owners = {o["partition_id"] for o in await store.list_ownership(info["namespace"], info["hubs"][0]["name"],
                                                                       "$Default")}
    assert found == {p: s for p, s in last.items() if s >= 0}
    assert owners == set(last)


async def test_blob_checkpoints_as_the_agent_on_azurite_with_oauth(
        sandbox: Sandbox, env: dict[str, str], azurite_oauth: Azurite) -> None:
    # A plain container URL on HTTPS: the agent's Entra token for Storage authorizes, the sandbox CA
    # (AGENTSEAT_CA_BUNDLE) verifies Azurite's certificate, and no key or SAS is stored anywhere.
    url = await azurite_oauth.create_container("checkpoints")
    assert url.startswith("https://127.0.0.1:") and url.endswith("/devstoreaccount1/checkpoints")
    async with anyio.create_task_group() as tg:
        running = await start(tg, {**env, "AGENTSEAT_CHECKPOINT_STORE": url})
        await wait_for(lambda: running.runtime.status.source == "eventhub")
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "blob as the agent"})
        await wait_for(lambda: len(running.events) >= 1, timeout=60)
        last = await hub_last_sequences(sandbox)
        await wait_for(lambda: caught_up(running, last), timeout=60)
        assert [(e.source, e.text) for e in running.events] == [("eventhub", "blob as the agent")]
        assert "https://storage.azure.com" in running.runtime.tokens._cache  # noqa: SLF001
        tg.cancel_scope.cancel()
    assert not checkpoints(Path(env["AGENTSEAT_STATE_DIR"])), "the local store was used instead of Blob"
    assert sandbox.stats.tokens["user_fic_storage"] >= 1  # the Agent User's delegated Storage token
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    async with azurite_oauth.key_store("checkpoints") as store:  # read back as the operator, with the account key
        found = {c["partition_id"]: c["sequence_number"] for c in
                 await store.list_checkpoints(info["namespace"], info["hubs"][0]["name"], "$Default")}
    assert found == {p: s for p, s in last.items() if s >= 0}
    assert await azurite_oauth.tokens_accepted() >= 1  # Azurite's Bearer authenticator let the agent in


async def test_a_channel_mention_arrives_through_the_hub(sandbox: Sandbox, env: dict[str, str]) -> None:
    # The joined channel's subscription points at the hub as the chats' do; the post comes from the hub.
    from tests.channels._sandbox import AGENT, GRACE, make_team, post

    team = await make_team(sandbox, "Hub team", GRACE, upn(sandbox, "agent_user"))
    async with anyio.create_task_group() as tg:
        running = await start(tg, {**env, "AGENTSEAT_GROUP_POLICY": "all"})
        runtime = running.runtime
        await wait_for(lambda: runtime.status.source == "eventhub")
        assert runtime.channel_manager is not None
        await wait_for(lambda: bool(runtime.channel_manager.covered()))  # subscribed: no longer polled
        [sub] = [s for s in sandbox.tenant.subscriptions.values() if "/channels/" in s.resource]
        assert sub.notification_url == sub.lifecycle_url == notification_url(runtime.settings)
        asked = await post(sandbox, GRACE, team, f"@{AGENT} through the hub?", mentions=[AGENT])
        await wait_for(lambda: any(e.message_id == asked for e in running.events), timeout=60)
        event = next(e for e in running.events if e.message_id == asked)
        assert (event.kind, event.source, event.mentioned) == ("channel", "eventhub", True)
        tg.cancel_scope.cancel()
