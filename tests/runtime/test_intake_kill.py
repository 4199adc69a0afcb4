"""kill -9 loses no pending confirmation: `agentseat watch` as a real process against the sandbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio

from agentseat.sandbox.app import Sandbox
from bench._harness import WatchProcess, inbox_rows
from bench.attack import start_runtime
from tests.runtime.test_runtime import control, upn, wait_for

MESSAGE_GET = "GET /chats/{chat_id}/messages/{message_id}"


def pending_rows(state: Path) -> int:
    path = state / "intake.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM pending").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


async def test_kill_9_after_the_202_loses_no_sponsor_message(sandbox: Sandbox, tmp_path: Path) -> None:
    proc, env, _ = await start_runtime(sandbox, tmp_path, log_level="info")
    state = Path(env["AGENTSEAT_STATE_DIR"])
    second: WatchProcess | None = None
    try:
        # Graph cannot answer the confirmation, so the message can only be in intake.db.
        await control(sandbox, "POST", "/_sandbox/faults",
                      {"graph": [{"route": MESSAGE_GET, "rate": 1.0, "status": 503, "retry_after": 1}]})
        await control(sandbox, "POST", "/_sandbox/messages", {"from": upn(sandbox, "sponsor"),
                      "to": upn(sandbox, "agent_user"), "text": "survive kill -9"})
        await wait_for(lambda: pending_rows(state) == 1 and sandbox.stats.notifications["sent"] >= 1)
        proc.kill9()
        assert inbox_rows(state) == []
        # The next process confirms it from intake.db; the poller cannot list chats meanwhile.
        await control(sandbox, "POST", "/_sandbox/faults",
                      {"graph": [{"route": "GET /me/chats", "rate": 1.0, "status": 503, "retry_after": 1}]})
        second = WatchProcess(env, tmp_path / "watch2.jsonl", tmp_path / "runtime2.log")
        second.start()
        await wait_for(lambda: len(inbox_rows(state)) == 1, timeout=60)
        [(kind, source, text, trust, confirmed)] = inbox_rows(state, "kind, source, text, trust, confirmed")
        assert (kind, source, text, trust, confirmed) == ("teams", "webhook", "survive kill -9", "sponsor", 1)
        await wait_for(lambda: pending_rows(state) == 0)
    finally:
        await control(sandbox, "DELETE", "/_sandbox/faults")
        with anyio.CancelScope(shield=True):
            for p in (proc, second):
                if p is not None:
                    p.stop()
