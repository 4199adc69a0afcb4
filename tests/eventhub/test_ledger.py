"""The shared ledger of stored keys (eventhub/ledger.py) on Azurite: each machine uploads what its inbox
stored in batches, a resync's screen drops what another machine stored (never its own), only blobs
flushed since the oldest message read are downloaded, the manager prunes old blobs, and a stop flushes."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from agentseat.eventhub.client import ledger_container
from agentseat.eventhub.ledger import PREFIX, Ledger
from agentseat.runtime.inbox import Event, Inbox
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.eventhub.conftest import Azurite
from tests.eventhub.test_storage_oauth import credential


def _dm(n: int, *, created: datetime | None = None) -> Event:
    at = (created or datetime.now(UTC)).isoformat()
    return Event.teams(chat_id="19:chat", message_id=f"m{n}", sender_id="u1", sender_upn="", sender_name="",
                       trust="colleague", text=f"text {n}", created_at=at, source="eventhub",
                       received_at=at if created else None)


async def _container(azurite: Azurite, url: str | None = None) -> Any:
    """A machine's client on the shared container (made on the first call)."""
    url = url or await azurite.container_sas_url("checkpoints")
    return ledger_container(settings_from_env({"AGENTSEAT_CHECKPOINT_STORE": url}), None)


async def _blobs(container: Any) -> list[str]:
    return [b.name async for b in container.list_blobs(name_starts_with=PREFIX)]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S.%fZ")


async def test_a_flush_uploads_every_key_stored_since_the_last_as_one_blob(azurite: Azurite, tmp_path: Path) -> None:
    container = await _container(azurite)
    with Inbox(tmp_path / "a.db") as inbox:
        ledger = Ledger(container, inbox, machine_id="machine-a")
        inbox.append([_dm(n) for n in range(30)])
        assert await ledger.flush()
        assert await ledger.flush()  # nothing new: no PUT
        names = await _blobs(container)
        assert len(names) == 1 and names[0].startswith(f"{PREFIX}machine-a/")
        body = json.loads(await (await container.download_blob(names[0])).readall())
        assert body["keys"] == [e.key for e in inbox.read(0, 100)]
        inbox.append([_dm(30), _dm(31, created=datetime.now(UTC) - timedelta(days=3))])
        assert await ledger.flush()
        assert len(await _blobs(container)) == 2  # without m31: older than the retention, no resync reads it
        assert ledger.counters["flushes"] == 2 and ledger.counters["keys_flushed"] == 31
        # The position survives a restart: a new ledger on this inbox uploads only what came after.
        again = Ledger(container, inbox)
        assert again.machine_id == "machine-a" and again.flushed_seq == ledger.flushed_seq
        await ledger.aclose()


async def test_the_screen_drops_what_another_machine_stored_and_never_its_own(azurite: Azurite,
                                                                                tmp_path: Path) -> None:
    url = await azurite.container_sas_url("checkpoints")
    container_a, container_b = await _container(azurite, url), await _container(azurite, url)
    with Inbox(tmp_path / "a.db") as inbox_a, Inbox(tmp_path / "b.db") as inbox_b:
        a, b = Ledger(container_a, inbox_a), Ledger(container_b, inbox_b)
        assert a.machine_id != b.machine_id
        on_b = [_dm(n) for n in range(0, 10)]
        on_a = [_dm(n) for n in range(10, 14)]
        inbox_b.append(on_b)
        inbox_a.append(on_a)
        assert await b.flush() and await a.flush()
        read = [_dm(n) for n in range(0, 16)]  # what the manager's reconcile read from Graph
        kept = await a.screen(read)
        assert [e.message_id for e in kept] == [f"m{n}" for n in range(10, 16)]  # its own and the unknown stay
        assert a.skipped["teams"] == 10
        assert a.counters["downloads"] == 1  # b's blob; a's own is never read
        again = await a.screen(read)  # listed again (or within its freshness), never downloaded twice
        assert len(again) == 6 and a.counters["downloads"] == 1
        assert [e.message_id for e in await b.screen(read)] == [f"m{n}" for n in (*range(0, 10), 14, 15)]
        await a.aclose()
        await b.aclose()


async def test_only_blobs_flushed_since_the_oldest_message_read_are_downloaded(azurite: Azurite,
                                                                                tmp_path: Path) -> None:
    container = await _container(azurite)
    hours_ago = datetime.now(UTC) - timedelta(hours=3)
    old = {"machine": "machine-b", "keys": [_dm(1).key]}
    await container.upload_blob(f"{PREFIX}machine-b/{_stamp(hours_ago)}.json", json.dumps(old).encode())
    with Inbox(tmp_path / "a.db") as inbox:
        a = Ledger(container, inbox)
        assert await a.screen([_dm(1)]) != []  # a message made now cannot be in a blob flushed 3 hours ago
        assert a.counters["downloads"] == 0
        assert await a.screen([_dm(1, created=hours_ago - timedelta(minutes=1))]) == []  # an older one can
        assert a.counters["downloads"] == 1 and a.skipped["teams"] == 1
        await a.aclose()


async def test_the_manager_prunes_blobs_older_than_the_retention(azurite: Azurite, tmp_path: Path) -> None:
    container = await _container(azurite)
    days_ago = datetime.now(UTC) - timedelta(days=3)
    await container.upload_blob(f"{PREFIX}machine-b/{_stamp(days_ago)}.json", b'{"keys": ["x"]}')
    with Inbox(tmp_path / "a.db") as inbox:
        a = Ledger(container, inbox, retention_seconds=2 * 86_400)
        inbox.append([_dm(1)])
        assert await a.flush()
        assert await a.prune() == 1
        names = await _blobs(container)
        assert len(names) == 1 and f"/{a.machine_id}/" in names[0]
        assert a.counters["pruned"] == 1
        await a.aclose()


async def test_the_loop_batches_while_messages_flow_and_flushes_on_stop(azurite: Azurite, tmp_path: Path) -> None:
    container = await _container(azurite)
    with Inbox(tmp_path / "a.db") as inbox:
        ledger = Ledger(container, inbox, flush_seconds=0.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.run)
            async with ledger._flush_lock:  # a burst, stored one by one before the first flush can read
                for n in range(20):
                    await inbox.aappend([_dm(n)])
            with anyio.fail_after(30):
                while ledger.counters["keys_flushed"] < 20:
                    await anyio.sleep(0.05)
            assert ledger.counters["flushes"] == 1  # one blob, not twenty
            await inbox.aappend([_dm(99)])  # stored just before the stop: not left for the next start
            tg.cancel_scope.cancel()
        assert ledger.counters["keys_flushed"] == 21
        keys = set()
        for name in await _blobs(container):
            keys |= set(json.loads(await (await container.download_blob(name)).readall())["keys"])
        assert _dm(99).key in keys
        await ledger.aclose()


async def test_an_unreachable_container_never_fails_a_resync_nor_loses_the_position(tmp_path: Path) -> None:
    from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import ContainerClient

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    container = ContainerClient(f"http://127.0.0.1:{port}/devstoreaccount1?sv=x&sig=y", "checkpoints", retry_total=0)
    with Inbox(tmp_path / "a.db") as inbox:
        ledger = Ledger(container, inbox)
        read = [_dm(1), _dm(2)]
        assert await ledger.screen(read) == read  # stored as before the ledger: a duplicate, never a loss
        assert ledger.counters["screen_failed"] == 1
        inbox.append(read)
        assert not await ledger.flush()
        assert ledger.flushed_seq == 0 and ledger.counters["flush_failed"] == 1  # uploaded at the next flush
        await ledger.aclose()


async def test_the_ledger_works_as_the_agent_on_a_plain_container_url(
        sandbox: Sandbox, agent_env: dict[str, str], azurite_oauth: Azurite, tmp_path: Path) -> None:
    url = await azurite_oauth.create_container("checkpoints")  # no SAS: the agent's Entra token authorizes
    settings = settings_from_env({**agent_env, "AGENTSEAT_CHECKPOINT_STORE": url})
    agent = credential(settings)
    with Inbox(tmp_path / "a.db") as inbox_a, Inbox(tmp_path / "b.db") as inbox_b:
        a, b = Ledger(ledger_container(settings, agent), inbox_a), Ledger(ledger_container(settings, agent), inbox_b)
        inbox_b.append([_dm(1)])
        assert await b.flush()
        assert [e.message_id for e in await a.screen([_dm(1), _dm(2)])] == ["m2"]
        assert await a.prune() == 0 and not a.counters["screen_failed"]
        await a.aclose()
        await b.aclose()
    assert await azurite_oauth.tokens_accepted(3) >= 3  # the PUT, the listing and the download, as the agent
