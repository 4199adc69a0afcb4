"""azure-eventhub's `CheckpointStore` on SQLite: checkpoints and ownership for one machine.

AGENTSEAT_CHECKPOINT_STORE=local keeps them in the agent's inbox database (`inbox.db`), in
two tables of their own created here (`CREATE TABLE IF NOT EXISTS`), on a connection of
their own. Why there and not in a file beside it: an operator who copies or removes the
inbox moves the checkpoints with it, so a fresh inbox never resumes past events it does not
hold. Why not through inbox.py's schema: the tables are this store's alone, an older
agentseat ignores them, and the inbox's `user_version` stays untouched.

Semantics follow BlobCheckpointStore's: a claim with an `etag` succeeds only while the
stored etag still matches, a claim without one only if nobody holds a row yet; a lost claim
is left out of the answer. Checkpoints are kept per partition (offset as text, sequence
number as an integer, as the SDK writes them to Blob metadata).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from azure.eventhub.aio import CheckpointStore

__all__ = ["SqliteCheckpointStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventhub_ownership(
  namespace TEXT NOT NULL, hub TEXT NOT NULL, grp TEXT NOT NULL, partition_id TEXT NOT NULL,
  owner_id TEXT NOT NULL, etag TEXT NOT NULL, modified REAL NOT NULL,
  PRIMARY KEY(namespace, hub, grp, partition_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventhub_checkpoints(
  namespace TEXT NOT NULL, hub TEXT NOT NULL, grp TEXT NOT NULL, partition_id TEXT NOT NULL,
  offset TEXT, sequence_number INTEGER, updated REAL NOT NULL,
  PRIMARY KEY(namespace, hub, grp, partition_id)) WITHOUT ROWID
"""


def _key(namespace: str, hub: str, group: str) -> tuple[str, str, str]:
    # Blob names are lower-cased by the SDK's store; do the same so both stores agree on identity.
    return namespace.lower(), hub.lower(), group.lower()


class SqliteCheckpointStore(CheckpointStore):
    """Checkpoints and partition ownership in a SQLite file (the inbox database)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._conn.execute(statement)

    def close_sync(self) -> None:
        with self._lock:
            self._conn.close()

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.close_sync)

    async def _run(self, func: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return func(*args)
        return await anyio.to_thread.run_sync(locked)

    # --- ownership ---------------------------------------------------------------------
    async def list_ownership(self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str,
                             **kwargs: Any) -> Iterable[dict[str, Any]]:
        key = _key(fully_qualified_namespace, eventhub_name, consumer_group)
        rows = await self._run(lambda: self._conn.execute(
            "SELECT partition_id, owner_id, etag, modified FROM eventhub_ownership "
            "WHERE namespace=? AND hub=? AND grp=? ORDER BY partition_id", key).fetchall())
        return [{"fully_qualified_namespace": fully_qualified_namespace, "eventhub_name": eventhub_name,
                 "consumer_group": consumer_group, "partition_id": pid, "owner_id": owner, "etag": etag,
                 "last_modified_time": modified} for pid, owner, etag, modified in rows]

    async def claim_ownership(self, ownership_list: Iterable[dict[str, Any]], **kwargs: Any) -> Iterable[dict[str, Any]]:
        wanted = [dict(o) for o in ownership_list]
        return await self._run(self._claim, wanted)

    def _claim(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        claimed: list[dict[str, Any]] = []
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ownership in wanted:
                key = (*_key(ownership["fully_qualified_namespace"], ownership["eventhub_name"],
                             ownership["consumer_group"]), str(ownership["partition_id"]))
                etag, now = str(uuid.uuid4()), datetime.now(UTC).timestamp()
                if ownership.get("etag"):
                    won = conn.execute(
                        "UPDATE eventhub_ownership SET owner_id=?, etag=?, modified=? WHERE namespace=? AND hub=? "
                        "AND grp=? AND partition_id=? AND etag=?",
                        (ownership["owner_id"], etag, now, *key, ownership["etag"])).rowcount == 1
                else:
                    won = conn.execute(
                        "INSERT OR IGNORE INTO eventhub_ownership VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*key, ownership["owner_id"], etag, now)).rowcount == 1
                if won:  # the SDK reads `last_modified_time` as epoch seconds (its Blob store converts)
                    claimed.append({**ownership, "etag": etag, "last_modified_time": now})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return claimed

    # --- checkpoints -------------------------------------------------------------------
    async def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
        key = (*_key(str(checkpoint["fully_qualified_namespace"]), str(checkpoint["eventhub_name"]),
                     str(checkpoint["consumer_group"])), str(checkpoint["partition_id"]))
        offset = checkpoint.get("offset")
        values = (None if offset is None else str(offset), checkpoint.get("sequence_number"),
                  datetime.now(UTC).timestamp())
        await self._run(lambda: self._conn.execute(
            "INSERT INTO eventhub_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "offset=excluded.offset, sequence_number=excluded.sequence_number, updated=excluded.updated",
            (*key, *values)))

    async def list_checkpoints(self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str,
                               **kwargs: Any) -> Iterable[dict[str, Any]]:
        key = _key(fully_qualified_namespace, eventhub_name, consumer_group)
        rows = await self._run(lambda: self._conn.execute(
            "SELECT partition_id, offset, sequence_number FROM eventhub_checkpoints "
            "WHERE namespace=? AND hub=? AND grp=? ORDER BY partition_id", key).fetchall())
        return [{"fully_qualified_namespace": fully_qualified_namespace, "eventhub_name": eventhub_name,
                 "consumer_group": consumer_group, "partition_id": pid, "offset": offset,
                 "sequence_number": seq} for pid, offset, seq in rows]
