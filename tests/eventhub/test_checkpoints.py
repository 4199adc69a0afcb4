"""The local checkpoint store (AGENTSEAT_CHECKPOINT_STORE=local): azure-eventhub's CheckpointStore
contract on the inbox's SQLite file, with the Blob store's optimistic concurrency."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agentseat.eventhub.checkpoints import SqliteCheckpointStore
from agentseat.runtime.events import Event
from agentseat.runtime.inbox import Inbox

NS, HUB, GROUP = "ns.servicebus.windows.net", "graph", "$Default"


def ownership(partition: str, owner: str, etag: str | None = None) -> dict[str, Any]:
    found = {"fully_qualified_namespace": NS, "eventhub_name": HUB, "consumer_group": GROUP,
             "partition_id": partition, "owner_id": owner}
    return found | ({"etag": etag} if etag else {})


async def test_first_claim_wins_and_a_second_fresh_claim_is_left_out(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "inbox.db")
    won = list(await store.claim_ownership([ownership("0", "a"), ownership("1", "a")]))
    assert [o["partition_id"] for o in won] == ["0", "1"] and all(o["etag"] for o in won)
    assert list(await store.claim_ownership([ownership("0", "b")])) == []  # someone holds it: lost
    listed = {o["partition_id"]: o for o in await store.list_ownership(NS, HUB, GROUP)}
    assert listed["0"]["owner_id"] == "a" and listed["0"]["etag"] == won[0]["etag"]
    assert isinstance(listed["0"]["last_modified_time"], float)
    await store.close()


async def test_a_claim_with_a_stale_etag_loses_and_the_current_one_takes_over(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "inbox.db")
    (first,) = await store.claim_ownership([ownership("0", "a")])
    (renewed,) = await store.claim_ownership([ownership("0", "a", first["etag"])])
    assert renewed["etag"] != first["etag"]
    assert list(await store.claim_ownership([ownership("0", "b", first["etag"])])) == []  # stale: lost
    (stolen,) = await store.claim_ownership([ownership("0", "b", renewed["etag"])])
    assert stolen["owner_id"] == "b"
    (row,) = await store.list_ownership(NS, HUB, GROUP)
    assert row["owner_id"] == "b"
    await store.close()


async def test_checkpoints_are_kept_per_partition_and_survive_a_reopen(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "inbox.db")
    base = {"fully_qualified_namespace": NS, "eventhub_name": HUB, "consumer_group": GROUP}
    await store.update_checkpoint(base | {"partition_id": "0", "offset": "100", "sequence_number": 4})
    await store.update_checkpoint(base | {"partition_id": "0", "offset": "250", "sequence_number": 9})
    await store.update_checkpoint(base | {"partition_id": "1", "offset": "7", "sequence_number": 0})
    await store.close()
    again = SqliteCheckpointStore(tmp_path / "inbox.db")
    found = {c["partition_id"]: c for c in await again.list_checkpoints(NS, HUB, GROUP)}
    assert found["0"]["offset"] == "250" and found["0"]["sequence_number"] == 9
    assert found["1"]["sequence_number"] == 0
    assert list(await again.list_checkpoints(NS, HUB, "other-group")) == []  # groups are apart
    await again.close()


async def test_the_store_lives_in_the_inbox_database_beside_its_events(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    inbox = Inbox(path)
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    store = SqliteCheckpointStore(path)
    base = {"fully_qualified_namespace": NS, "eventhub_name": HUB, "consumer_group": GROUP}
    await store.update_checkpoint(base | {"partition_id": "0", "offset": "1", "sequence_number": 1})
    event = Event.mail(message_id="m1", sender_id="u1", sender_upn="a@b.c", sender_name="A", trust="colleague",
                       text="x", subject="s", created_at="2026-12-06T00:00:00Z", source="eventhub")
    assert [e.source for e in inbox.append([event])] == ["eventhub"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == version  # inbox schema untouched
    inbox.close()
    assert (await store.list_checkpoints(NS, HUB, GROUP))[0]["sequence_number"] == 1  # type: ignore[index]
    await store.close()
