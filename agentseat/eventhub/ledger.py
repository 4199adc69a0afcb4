"""The shared ledger of stored keys: what each machine on a shared hub stored, for the others' resyncs.

Several machines of one agent (a Blob checkpoint store) each store the messages of the
partitions they own. The lease holder's resyncs and reconcile read Graph from its own
watermarks, so without this they would store again what the others stored and handled. Each
machine therefore uploads the inbox keys it stores, in batches, as small blobs in the
checkpoint container (`agentseat-ledger/<machine>/<UTC time>.json`): one PUT per machine per
`FLUSH_SECONDS` while messages flow, none when idle. Before a resync stores what it read, the
screen drops the keys another machine's ledger holds: one listing of the prefix, and a download
of each other machine's blob flushed since the oldest message read (each blob once: they never
change). The manager deletes blobs older than the retention (the longest resync window).

What it cannot cover: a key another machine stored but has not flushed yet (at most
`FLUSH_SECONDS` plus one PUT; flushed on stop too, and a machine that was killed uploads on its
next start what it stored since its last flush) can still be stored twice, as can a message
older than the retention. A Blob error never fails a resync: it stores everything, as before.

It reads the keys from the inbox (every event stored since the last flush, whatever stored it),
so it needs no hook in the intake, and its position survives a crash (the inbox's meta table).
It does not decide when resyncs run (runtime/poller.py, runtime/hub.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from azure.core.exceptions import ResourceNotFoundError

from ..graph.times import parse_graph_time
from ..runtime.events import Event
from ..runtime.inbox import Inbox

__all__ = ["FLUSH_SECONDS", "Ledger", "PREFIX", "RETENTION_SECONDS"]

log = structlog.get_logger(__name__)

PREFIX = "agentseat-ledger/"
#: A machine uploads what it stored at most this often: the window in which another machine's
#: resync cannot see it yet.
FLUSH_SECONDS = 5.0
#: Blobs older than this are deleted by the manager: at least the longest resync window (the consumer
#: raises it to twice the reconcile interval).
RETENTION_SECONDS = 2 * 86_400.0
#: The manager prunes at most this often.
PRUNE_SECONDS = 3_600.0
#: A listing is reused this long: a round over many chats screens each chat, and lists once.
LIST_FRESH_SECONDS = 1.0
#: A message is stored after Graph created it, give or take the clocks' skew: blobs flushed this long
#: before the oldest message read are downloaded too.
SKEW_SECONDS = 600.0
#: Messages (not reminders or summaries, which each machine's own clock raises).
_KINDS = frozenset({"teams", "teams_edit", "teams_delete", "channel", "mail"})
_MACHINE_KEY, _SEQ_KEY = "eventhub.machine_id", "eventhub.ledger_seq"
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_READ_CHUNK = 5_000


def _blob_time(name: str) -> float | None:
    """The flush time a blob's name carries (`.../<machine>/<time>.json`), or None for a foreign name."""
    try:
        stamp = name.rsplit("/", 1)[1].removesuffix(".json")
        return datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except (IndexError, ValueError):
        return None


def _machine(name: str) -> str:
    return name.removeprefix(PREFIX).partition("/")[0]


def _received(event: Event) -> float:
    try:
        return datetime.fromisoformat(event.received_at).timestamp()
    except ValueError:
        return float("inf")  # kept: better shared than not


def _oldest(events: Iterable[Event]) -> float | None:
    """The oldest creation time among `events`, None if one has none (then every blob counts)."""
    times: list[float] = []
    for event in events:
        try:
            times.append(parse_graph_time(event.created_at))
        except (ValueError, TypeError):
            return None
    return min(times, default=None)


class Ledger:
    """One machine's side of the ledger: its uploads, and the screen over the others' keys."""

    def __init__(self, container: Any, inbox: Inbox, *, flush_seconds: float = FLUSH_SECONDS,
                 retention_seconds: float = RETENTION_SECONDS, machine_id: str | None = None) -> None:
        self._container = container  # the vendored azure-storage-blob aio ContainerClient
        self._inbox = inbox
        self.flush_seconds = flush_seconds
        self.retention = retention_seconds
        self.machine_id = machine_id or inbox.get_meta(_MACHINE_KEY) or uuid.uuid4().hex
        if inbox.get_meta(_MACHINE_KEY) is None:
            inbox.set_meta(_MACHINE_KEY, self.machine_id)
        stored = inbox.get_meta(_SEQ_KEY)
        # First start with the ledger: what came before was never shared, and nothing older is uploaded.
        self.flushed_seq = int(stored) if stored and stored.isdigit() else inbox.latest_seq()
        if stored is None:
            inbox.set_meta(_SEQ_KEY, str(self.flushed_seq))
        self._flush_lock = anyio.Lock()
        self._list_lock = anyio.Lock()
        self._listed: list[tuple[str, float]] = []  # other machines' blobs: (name, flush time)
        self._listed_at = float("-inf")
        self._keys: dict[str, frozenset[str]] = {}  # downloaded blobs (they never change)
        self.counters: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()  # by kind: `resync_skipped_other_machine`
        self.last_flush_at = ""

    # --- uploads ------------------------------------------------------------------------
    async def run(self) -> None:
        """Upload what the inbox gains, one blob per `flush_seconds` at most, until cancelled (then once more)."""
        try:
            while True:
                await self._inbox.wait_for_new(self.flushed_seq)
                await anyio.sleep(self.flush_seconds)  # the batch: what else arrives meanwhile
                if not await self.flush():
                    await anyio.sleep(self.flush_seconds)  # Blob failed: try again, not in a loop
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.flush()  # stop (Ctrl-C, a lost lease): what was stored is not left unshared

    async def flush(self) -> bool:
        """Upload the keys stored since the last flush as one blob; False when Blob refused."""
        async with self._flush_lock:
            keys, last = await anyio.to_thread.run_sync(self._unflushed)
            if last == self.flushed_seq:
                return True
            if keys:
                now = datetime.now(UTC)
                name = f"{PREFIX}{self.machine_id}/{now.strftime(_TIME_FORMAT)}.json"
                body = json.dumps({"machine": self.machine_id, "from_seq": self.flushed_seq, "to_seq": last,
                                   "keys": keys}, separators=(",", ":"))
                try:
                    await self._container.upload_blob(name, body.encode(), overwrite=True)
                except Exception as exc:
                    self.counters["flush_failed"] += 1
                    log.warning("ledger_flush_failed", keys=len(keys), error=type(exc).__name__)
                    return False
                self.counters["flushes"] += 1
                self.counters["keys_flushed"] += len(keys)
                self.last_flush_at = now.isoformat(timespec="seconds")
                log.info("ledger_flushed", keys=len(keys), to_seq=last)
            self.flushed_seq = last
            await anyio.to_thread.run_sync(self._inbox.set_meta, _SEQ_KEY, str(last))
            return True

    def _unflushed(self) -> tuple[list[str], int]:
        """The message keys stored since the last flush (none older than the retention: no resync reads
        them), and the last seq read."""
        keys: list[str] = []
        last, oldest = self.flushed_seq, datetime.now(UTC).timestamp() - self.retention
        while events := self._inbox.read(last, _READ_CHUNK):
            keys += [e.key for e in events if e.kind in _KINDS and _received(e) >= oldest]
            last = events[-1].seq
        return keys, last

    # --- the screen ---------------------------------------------------------------------
    async def screen(self, events: list[Event]) -> list[Event]:
        """`events` without those another machine's ledger holds; all of them when Blob cannot be read."""
        if not events:
            return events
        since = _oldest(events)
        try:
            held = await self._others(None if since is None else since - SKEW_SECONDS)
        except Exception as exc:  # a duplicate is better than a loss
            self.counters["screen_failed"] += 1
            log.warning("ledger_screen_failed", error=type(exc).__name__)
            return events
        kept = [e for e in events if e.key not in held]
        for event in events:
            if event.key in held:
                self.skipped[event.kind] += 1
        if len(kept) != len(events):
            log.info("resync_skipped_other_machine", events=len(events) - len(kept))
        return kept

    async def _others(self, since: float | None) -> set[str]:
        """The keys other machines flushed at or after `since` (None: every blob kept)."""
        async with self._list_lock:
            if time.monotonic() - self._listed_at >= LIST_FRESH_SECONDS:
                await self._list()
            wanted = [name for name, at in self._listed if (since is None or at >= since) and name not in self._keys]
            async with anyio.create_task_group() as tg:
                limiter = anyio.CapacityLimiter(8)
                for name in wanted:
                    tg.start_soon(self._download, name, limiter)
            held: set[str] = set()
            for name, at in self._listed:
                if (since is None or at >= since) and name in self._keys:
                    held |= self._keys[name]
            return held

    async def _list(self) -> None:
        listed: list[tuple[str, float]] = []
        async for blob in self._container.list_blobs(name_starts_with=PREFIX):
            at = _blob_time(blob.name)
            if at is not None and _machine(blob.name) != self.machine_id:
                listed.append((blob.name, at))
        self.counters["lists"] += 1
        self._listed, self._listed_at = listed, time.monotonic()
        names = {name for name, _ in listed}
        self._keys = {name: keys for name, keys in self._keys.items() if name in names}  # pruned ones go

    async def _download(self, name: str, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            try:
                stream = await self._container.download_blob(name)
                body = json.loads(await stream.readall())
            except ResourceNotFoundError:  # pruned since the listing: old, so no resync needs it
                body = {}
        self._keys[name] = frozenset(str(k) for k in body.get("keys", []))
        self.counters["downloads"] += 1

    # --- pruning (the manager) ----------------------------------------------------------
    async def prune(self) -> int:
        """Delete every machine's blobs older than the retention; how many went."""
        pruned = 0
        cutoff = time.time() - self.retention
        old = [blob.name async for blob in self._container.list_blobs(name_starts_with=PREFIX)
               if (at := _blob_time(blob.name)) is not None and at < cutoff]
        for name in old:  # one DELETE each: pruning runs hourly, on the manager only
            try:
                await self._container.delete_blob(name)
            except Exception as exc:  # gone already (another manager), or refused: the next round
                log.info("ledger_prune_skipped", error=type(exc).__name__)
                continue
            pruned += 1
        self.counters["pruned"] += pruned
        if pruned:
            log.info("ledger_pruned", blobs=pruned)
        return pruned

    async def prune_every(self, seconds: float = PRUNE_SECONDS) -> None:
        """The manager's duty: prune now and every `seconds` until cancelled; a Blob error waits a round."""
        while True:
            try:
                await self.prune()
            except Exception as exc:
                log.warning("ledger_prune_failed", error=type(exc).__name__)
            await anyio.sleep(seconds)

    async def aclose(self) -> None:
        await self._container.close()

    def snapshot(self) -> dict[str, Any]:
        """What `status` shows: this machine's id and position, uploads, and the resyncs' skips by kind."""
        return {"machine_id": self.machine_id, "flushed_seq": self.flushed_seq, "last_flush_at": self.last_flush_at,
                **dict(self.counters), "resync_skipped_other_machine": dict(self.skipped)}
