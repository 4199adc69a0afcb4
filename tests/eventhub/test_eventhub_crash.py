"""Two machines of one agent, as real processes, share a 4-partition hub and Blob checkpoints on
Azurite; the one managing the subscriptions is killed with `kill -9` halfway through 1,000 DMs (issue 14).

Each machine's state directory is made by its own `agentseat setup`, so each signs with its own
certificate (the second is appended to the Blueprint), and Graph encrypts notifications for the
machine that made the subscription: the other reads what its partitions name from Graph. The
survivor takes over the lease and the partitions; every message ends up stored in one of the two
inboxes, and a message stored on both is one the killed machine had stored past its last Blob
checkpoint: the crash window, measured per partition from Azurite's checkpoints, the hub's events
and the killed machine's inbox, and printed with the takeover times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.eventhub.status import META_KEY
from agentseat.runtime.inbox import Inbox
from agentseat.sandbox.app import Sandbox
from tests.eventhub.conftest import Azurite
from tests.runtime.test_runtime import control, upn

TOTAL = 1000
ALL = {"0", "1", "2", "3"}
_PASSPHRASE = "crash-test-passphrase-not-secret"


def _cli(sandbox: Sandbox, state: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "agentseat.cli", "--env-file", str(sandbox.env_path), "--state-dir", str(state),
            *argv]


def _setup(sandbox: Sandbox, state: Path, env: dict[str, str]) -> None:
    """`agentseat setup` for a machine from nothing, as its operator would run it."""
    done = subprocess.run(_cli(sandbox, state, "setup"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _spawn(sandbox: Sandbox, state: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(_cli(sandbox, state, "watch", "--mode", "eventhub"), env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def _inbox(state: Path) -> dict[str, Any]:
    """message id -> count, and the consumer's status (owned partitions), of a machine's inbox."""
    if not (state / "inbox.db").exists():
        return {"ids": Counter(), "hub": {}}
    with Inbox(state / "inbox.db") as inbox:
        ids = Counter(e.message_id for e in inbox.read(0, 100_000) if e.kind == "teams")
        return {"ids": ids, "hub": json.loads(inbox.get_meta(META_KEY) or "{}")}


def _logged(log: Path, event: str) -> bool:
    return log.exists() and event in log.read_text(errors="replace")


def _owned(state: Path) -> set[str]:
    return set(_inbox(state)["hub"].get("owned", []))


async def _checkpoints(container_url: str, namespace: str, hub: str) -> dict[str, int]:
    """partition -> the sequence number of its last Blob checkpoint, as the SDK wrote it to Azurite."""
    from agentseat.eventhub.client import checkpoint_store
    from tests.conftest import settings_from_env

    settings = settings_from_env({"AGENTSEAT_CHECKPOINT_STORE": container_url})
    async with checkpoint_store(settings, Path("unused"), None) as store:  # the runtime's own reading of the URL
        found = await store.list_checkpoints(namespace, hub, "$Default")
    return {str(c["partition_id"]): int(c["sequence_number"]) for c in found}


def _hub_messages(sandbox: Sandbox, hub_name: str) -> dict[str, list[tuple[int, set[str]]]]:
    """partition -> [(sequence number, chat message ids its notifications name)], from the emulated hub."""
    from proton import Message

    hub = next(h for h in sandbox.eventhubs.namespace.hubs.values() if h.name == hub_name)
    out: dict[str, list[tuple[int, set[str]]]] = {}
    for partition in hub.partitions:
        for event in list(partition.events):
            msg = Message()
            msg.decode(event.message)
            body = msg.body if isinstance(msg.body, (bytes, str)) else bytes(msg.body)
            items = json.loads(body).get("value", [])
            ids = {str(n.get("resourceData", {}).get("id")) for n in items if "/messages" in str(n.get("resource"))}
            out.setdefault(partition.id, []).append((event.sequence, ids))
    return out


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    """`wait_for`, a little slower: each check opens another process's inbox. The timeout only bounds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.2)


async def _send(sandbox: Sandbox, texts: list[str], sent: list[str], halfway: anyio.Event) -> None:
    """DMs from two colleagues through the control API, a few at a time on one connection pool."""
    senders = [upn(sandbox, "colleague1"), upn(sandbox, "colleague2")]
    to = upn(sandbox, "agent_user")
    limiter = anyio.CapacityLimiter(4)

    async def one(session: aiohttp.ClientSession, i: int, text: str) -> None:
        async with limiter:
            async with session.post(sandbox.url + "/_sandbox/messages", ssl=sandbox.client_ssl_context(),
                                    json={"from": senders[i % 2], "to": to, "text": text}) as resp:
                assert resp.status == 201, await resp.text()
                sent.append((await resp.json())["message_id"])
            if len(sent) == len(texts) // 2:
                halfway.set()
                await anyio.sleep(0.5)  # the killed machine goes down with events in flight, not after a lull

    async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
        for i, text in enumerate(texts):
            tg.start_soon(one, session, i, text)


@pytest.mark.timeout(300)  # about 30 s alone; the bounded waits leave room for a loaded CI machine
async def test_two_setup_machines_lose_nothing_to_a_kill_9_and_duplicate_only_the_crash_window(
        sandbox: Sandbox, azurite: Azurite, tmp_path: Path) -> None:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    namespace, hub = info["namespace"], info["hubs"][0]["name"]
    assert len(info["hubs"][0]["partitions"]) == 4
    container = await azurite.container_sas_url("checkpoints")
    base = {**os.environ, "AGENTSEAT_KEY_PASSPHRASE": _PASSPHRASE,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    state_a, state_b = tmp_path / "machine-a", tmp_path / "machine-b"
    for state in (state_a, state_b):
        await anyio.to_thread.run_sync(_setup, sandbox, state, base)
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")]
    assert len(blueprint.key_credentials) == 2  # each machine signs with its own certificate
    env = {**base, "AGENTSEAT_TUNNEL": "none", "AGENTSEAT_INBOUND_POLICY": "tenant",
           "AGENTSEAT_CHECKPOINT_STORE": container,
           # Short intervals so the survivor takes over in seconds (the defaults bound it to ~70 s).
           "AGENTSEAT_EVENTHUB_BALANCE_SECONDS": "1", "AGENTSEAT_EVENTHUB_OWNERSHIP_SECONDS": "4"}
    # a starts alone and makes the subscriptions, with its certificate: Graph encrypts for a, so only a
    # decrypts; any other machine reads from Graph what its partitions name. a stops, and b starts alone
    # and manages them (adopted, still encrypted for a). Then a comes back and follows.
    a = _spawn(sandbox, state_a, env, tmp_path / "a.log")
    b: subprocess.Popen[bytes] | None = None
    try:
        await _until(lambda: _owned(state_a) == ALL and _logged(tmp_path / "a.log", "eventhub_managing"), timeout=60)
        a.send_signal(signal.SIGINT)
        a.wait(timeout=60)
        b = _spawn(sandbox, state_b, env, tmp_path / "b.log")
        await _until(lambda: _owned(state_b) == ALL and _logged(tmp_path / "b.log", "eventhub_managing"), timeout=60)
        a = _spawn(sandbox, state_a, env, tmp_path / "a2.log")
        await _until(lambda: len(_owned(state_a)) == 2 and len(_owned(state_b)) == 2, timeout=60)
        sent: list[str] = []
        halfway = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send, sandbox, [f"c{i}" for i in range(TOTAL)], sent, halfway)
            await halfway.wait()
            await _until(lambda: len(_inbox(state_b)["ids"]) > 0, timeout=60)  # b is working when it dies
            b.send_signal(signal.SIGKILL)  # the manager, mid-stream, no goodbye
            b.wait()
            killed_at = time.monotonic()
            # What b had stored and checkpointed when it died. a claims b's partitions only once their
            # ownership expires (seconds), and claims before it checkpoints: checked after reading.
            owned_by_b = _owned(state_b)
            checkpoints = await _checkpoints(container, namespace, hub)
            assert not owned_by_b & _owned(state_a), "a claimed b's partitions before the checkpoints were read"
            inbox_b = _inbox(state_b)["ids"]
        await _until(lambda: _owned(state_a) == ALL, timeout=60)
        takeover = time.monotonic() - killed_at
        # a manages now, its startup duties done: with the subscriptions live, no read of Graph from its old
        # watermark (that would store again what b stored).
        await _until(lambda: _logged(tmp_path / "a2.log", "eventhub_managing"), timeout=60)
        managing = time.monotonic() - killed_at
        await _until(lambda: set(inbox_b) | set(_inbox(state_a)["ids"]) >= set(sent), timeout=120)
        inbox_a = _inbox(state_a)["ids"]
        assert len(sent) == TOTAL and set(inbox_a) | set(inbox_b) == set(sent)  # every message handled
        assert all(n == 1 for n in inbox_a.values()) and all(n == 1 for n in inbox_b.values())
        # The crash window: per partition b owned, what b had stored past its last Blob checkpoint.
        window: dict[str, set[str]] = {}
        for partition, events in _hub_messages(sandbox, hub).items():
            if partition in owned_by_b:
                after = checkpoints.get(partition, -1)
                window[partition] = {m for seq, ids in events if seq > after for m in ids} & set(inbox_b)
        in_window = set().union(*window.values())
        duplicates = set(inbox_a) & set(inbox_b)
        print(f"\ncrash window of the killed machine per partition: { {p: len(w) for p, w in sorted(window.items())} }"
              f" ({len(in_window)} messages); duplicates {len(duplicates)}; stored by the killed machine "
              f"{len(inbox_b)}, by the survivor {len(inbox_a)}; after the kill, all 4 partitions on the survivor in "
              f"{takeover:.1f} s, its manager duties done in {managing:.1f} s")
        assert duplicates <= in_window, sorted(duplicates - in_window)[:5]
        assert len(sandbox.tenant.subscriptions) == 2  # adopted at each hand-over, never made twice
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
