"""`agentseat watch --mode eventhub` as a real process: a `kill -9` mid-stream and a restart lose
no message and store none twice (the checkpoint lags the inbox, never leads it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


from agentseat.runtime.inbox import Inbox
from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import _dm, control, wait_for
from tests.runtime.test_runtime_processes import _live_subscriptions


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "agentseat.cli", "watch", "--mode", "eventhub"],
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=err)


def _logged(log: Path, *events: str) -> bool:
    text = log.read_text(errors="replace") if log.exists() else ""
    return all(event in text for event in events)


def _stored(state_dir: Path) -> Counter[tuple[str, str]]:
    if not (state_dir / "inbox.db").exists():
        return Counter()
    with Inbox(state_dir / "inbox.db") as inbox:
        return Counter((e.text, e.source) for e in inbox.read(0, 10_000))


async def test_kill_9_in_eventhub_mode_loses_nothing_and_duplicates_nothing(
        sandbox: Sandbox, agent_env: dict[str, str], tmp_path: Path) -> None:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    env = {**agent_env, "AGENTSEAT_TUNNEL": "none", "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"],
           "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"], "AGENTSEAT_EVENTHUB_ENDPOINT": info["endpoint"]}
    state = Path(env["AGENTSEAT_STATE_DIR"])
    proc = _spawn(env, tmp_path / "run1.log")
    try:
        await wait_for(lambda: _live_subscriptions(sandbox) == 2, timeout=60)
        # Reading the hub, and the startup resync over (else the resync, not the hub, stores what follows).
        await wait_for(lambda: _logged(tmp_path / "run1.log", "eventhub_partition_claimed", "kind=mail reason=startup",
                                       "kind=teams reason=startup"), timeout=60)
        sent = []
        for i in range(40):
            if i == 20:
                await wait_for(lambda: len(_stored(state)) >= 10, timeout=60)  # it was reading when killed
                proc.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
                proc.wait()
            sent.append(f"e{i}")
            await _dm(sandbox, "colleague1", sent[-1])
        proc = _spawn(env, tmp_path / "run2.log")
        await wait_for(lambda: sorted({t for t, _ in _stored(state)}) == sorted(sent), timeout=120)
        stored = _stored(state)
        assert sum(stored.values()) == 40  # each message once, whichever path stored it
        # Most came through the hub. Which path stores a given message is a race the inbox settles: on a
        # loaded machine the first run's startup resync can still be reading when e0 arrives, and after
        # the restart its startup resync and the hub race for the rest (Graph lists the same messages).
        assert sum(n for (_, source), n in stored.items() if source == "eventhub") >= 10
        assert _live_subscriptions(sandbox) == 2  # the restart kept its subscriptions
        assert all(s.notification_url.startswith("EventHub:https://") for s in sandbox.tenant.subscriptions.values())
    finally:
        proc.kill()
        proc.wait()
