"""The `agentseat` command as a user runs it: a subprocess against the sandbox, in its own state dir.

Shared by the tests that go end to end through the CLI (the variant matrix, `doctor --live`):
the key passphrase comes from the environment, as on a headless machine without a keyring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from agentseat.runtime.inbox import Inbox
from agentseat.sandbox.app import Sandbox


def cli_env(passphrase: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "AGENTSEAT_KEY_PASSPHRASE": passphrase,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **(extra or {})}


def _argv(sandbox: Sandbox, state: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "agentseat.cli", "--env-file", str(sandbox.env_path), "--state-dir", str(state),
            *argv]


def run_cli(sandbox: Sandbox, state: Path, *argv: str, env: dict[str, str],
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one command to its end; its output as text."""
    return subprocess.run(_argv(sandbox, state, *argv), env=env, capture_output=True, text=True, timeout=timeout)


def start_watch(sandbox: Sandbox, state: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`agentseat watch` in the background, its log (stderr) appended to `log`."""
    with log.open("ab") as err:
        return subprocess.Popen(_argv(sandbox, state, "watch"), env=env, stdout=subprocess.DEVNULL, stderr=err)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it; killed only if it does not stop within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stored(state: Path) -> Counter[str]:
    """How many times each message id is in the state dir's inbox."""
    if not (state / "inbox.db").exists():
        return Counter()
    with Inbox(state / "inbox.db") as inbox:
        return Counter(e.message_id for e in inbox.read(0, 10_000))
