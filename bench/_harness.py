"""What the soak and the attack runs share: a sandbox tenant, an agent, `agentseat watch` processes.

- `SandboxThread` runs the sandbox on its own event loop in a worker thread (an
  anyio blocking portal), as tests/conftest.py does, so the driver's loop and the
  emulator's never stall each other; `call` runs a function on the sandbox's loop.
- `provision_agent` gives the sandbox's agent a key, a certificate on its
  Blueprint and delegated consent, without `agentseat setup`, and returns the
  AGENTSEAT_* environment of a working runtime.
- `WatchProcess` is one `agentseat watch` subprocess: stdout (the JSON lines of
  the sink) and stderr (the logs) are appended to files across restarts.
- `inbox_rows` reads the runtime's SQLite inbox read-only, while it runs.
- `scan_logs` looks for token, key and secret material in log files.

Nothing here measures anything; bench/soak.py and bench/attack.py do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.tenant import Subscription, User

_T = TypeVar("_T")
REPO = Path(__file__).resolve().parent.parent
KEY_PASSPHRASE = "bench-passphrase-not-secret"
# The bench never touches a developer's real keyring: the key file is encrypted with the passphrase above.
KEYRING_ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
os.environ.update(KEYRING_ENV)


class SandboxThread:
    """A sandbox tenant served on loopback HTTPS from a worker thread's event loop."""

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        self.state_dir = state_dir
        self.options = options or SandboxOptions()
        self.sandbox: Sandbox | None = None
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> Sandbox:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sb = Sandbox(self.state_dir, self.options)
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._stack.enter_context(self._portal.wrap_async_context_manager(sb.running()))
        sb.portal = self._portal  # type: ignore[attr-defined]
        self.sandbox = sb
        return sb

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def call(sandbox: Sandbox, func: Callable[..., _T], *args: Any) -> _T:
    """Run `func(*args)` on the sandbox's loop thread (its state is not thread-safe)."""
    return sandbox.portal.call(func, *args)  # type: ignore[attr-defined]


def add_users(sandbox: Sandbox, names: Iterable[tuple[str, str]]) -> list[User]:
    """Add colleagues (login, display name) to the demo tenant."""

    def add() -> list[User]:
        tenant, users = sandbox.tenant, []
        for login, display in names:
            user = User(id=str(uuid.uuid4()), upn=f"{login}@{tenant.domain}", display_name=display,
                        mail=f"{login}@{tenant.domain}")
            tenant.users[user.id] = user
            users.append(user)
        sandbox.mark_dirty()
        return users

    return call(sandbox, add)


def provision_agent(sandbox: Sandbox, state_dir: Path, **overrides: object) -> dict[str, str]:
    """The AGENTSEAT_* environment of a working agent on `sandbox` (agentseat.sandbox.agent)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from agentseat.config import Settings
    from agentseat.identity.keys import KeyStore, generate_certificate
    from agentseat.sandbox.agent import register_agent

    cert = generate_certificate("agentseat bench agent")
    env = call(sandbox, register_agent, sandbox, cert.certificate.public_bytes(Encoding.DER))
    env |= {
        "AGENTSEAT_STATE_DIR": str(state_dir),
        "AGENTSEAT_CONFIG_FILE": str(state_dir / "agentseat.env"),
        "AGENTSEAT_KEY_PASSPHRASE": KEY_PASSPHRASE,
        "AGENTSEAT_TUNNEL": "loopback",
        "AGENTSEAT_MODE": "webhook",
        # Benchmarks and attacks post as colleagues and measure the pipeline, not pairing.
        "AGENTSEAT_INBOUND_POLICY": "tenant",
    }
    env |= {f"AGENTSEAT_{k.upper()}": str(v) for k, v in overrides.items()}
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    KeyStore(Settings(_env_file=None, **{k[len("AGENTSEAT_"):].lower(): v for k, v in env.items()})).add(cert)  # type: ignore[arg-type]
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_subscriptions(sandbox: Sandbox) -> list[Subscription]:
    def live() -> list[Subscription]:
        now = sandbox.clock.now()
        return [s for s in sandbox.tenant.subscriptions.values() if s.expiration > now]

    return call(sandbox, live)


def stats(sandbox: Sandbox) -> dict[str, Any]:
    return call(sandbox, sandbox.stats.snapshot)


async def control(session: aiohttp.ClientSession, sandbox: Sandbox, method: str, path: str,
                  body: Any = None) -> Any:
    """One call to the sandbox's control API; raises on an error status."""
    async with session.request(method, sandbox.url + path, json=body, ssl=sandbox.client_ssl_context()) as resp:
        text = await resp.text()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path} -> {resp.status}: {text[:300]}")
        return json.loads(text) if resp.content_type == "application/json" else text


@dataclass
class WatchProcess:
    """`agentseat watch` as a subprocess; stdout (the sink's JSON lines) and stderr append to files."""

    env: dict[str, str]
    stdout_path: Path
    stderr_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def start(self, **overrides: str) -> None:
        self.env = {**self.env, **{f"AGENTSEAT_{k.upper()}": v for k, v in overrides.items()}}
        full = {**os.environ, **KEYRING_ENV, **self.env}
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "agentseat.cli", "watch"], env=full, cwd=REPO,
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.starts += 1
        self.history.append({"event": "start", "pid": self.proc.pid, "at": time.time(),
                             "port": self.env.get("AGENTSEAT_WEBHOOK_PORT", "")})

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no goodbye, no cleanup (the crash the soak is about)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.history.append({"event": "kill -9", "pid": self.proc.pid, "at": time.time()})

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (Ctrl-C): the runtime cancels its task group and closes cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.history.append({"event": "stop", "pid": self.proc.pid, "at": time.time(), "code": code})
        return code


def inbox_rows(state_dir: Path, columns: str = "seq, key, kind, source, text") -> list[tuple[Any, ...]]:
    """Every stored event, read-only (the runtime may be writing)."""
    path = state_dir / "inbox.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(f"SELECT {columns} FROM events ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until true or `timeout` seconds passed; returns its last value."""
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(interval)
        return True
    return predicate()


# --- log scanning ----------------------------------------------------------------------------

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{16,}")


def scan_logs(paths: Iterable[Path], secrets: dict[str, str], *, markers: Iterable[str] = ()) -> dict[str, Any]:
    """Count log lines holding token or key material, a named secret, or a plaintext marker.

    Returns {"lines": n, "findings": {name: count}, "examples": {name: "file:line"}}: where,
    never the matching text itself.
    """
    needles = {name: value for name, value in secrets.items() if value}
    marks = [m for m in markers if m]
    findings: dict[str, int] = {}
    examples: dict[str, str] = {}
    lines = 0

    def hit(name: str, where: str) -> None:
        findings[name] = findings.get(name, 0) + 1
        examples.setdefault(name, where)

    for path in paths:
        if not path.exists():
            continue
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                lines += 1
                where = f"{path.name}:{number}"
                if JWT.search(line):
                    hit("jwt", where)
                if PEM.search(line):
                    hit("pem_block", where)
                if BEARER.search(line):
                    hit("bearer_token", where)
                for name, value in needles.items():
                    if value in line:
                        hit(name, where)
                for mark in marks:
                    if mark in line:
                        hit("message_plaintext", where)
                        break
    return {"lines": lines, "findings": findings, "examples": examples}


def log_events(path: Path, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """JSON log lines of `path` from byte offset `start`; returns (events, new offset).

    A line that is not JSON (a traceback, a crash) comes back as {"event": "<raw>", "raw": line}.
    """
    if not path.exists():
        return [], start
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a half-written last line waits for the next call
    events = []
    for raw in data[:end].decode("utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        try:
            parsed = json.loads(raw)
            events.append(parsed if isinstance(parsed, dict) else {"event": "<raw>", "raw": raw})
        except ValueError:
            events.append({"event": "<raw>", "raw": raw})
    return events, start + end


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@contextlib.contextmanager
def keep_or_temp(directory: str | None, prefix: str) -> Iterator[Path]:
    """`directory` if given (kept), else a temporary directory removed afterwards."""
    import tempfile

    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
