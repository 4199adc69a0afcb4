"""What every benchmark stands on: the sandbox, a provisioned agent, and `agentseat serve`
as a real subprocess driven by mcp's real stdio client.

Three processes, as in use: the sandbox (bench/sandbox_server.py, agentseat's sandbox
plus a few `/_bench/` routes), the runtime under test (`python -m agentseat.cli serve`,
exactly as an MCP host starts it), and this one, which is the MCP host (mcp's
`ClientSession` over `stdio_client`, with a `NotificationBinding` for the channel), the
control client and the load generator. Every timestamp is on the sandbox clock, which
this process reads exactly (`SandboxHost.now`), so sandbox and client times compare.

Nothing here asserts a timing: benchmarks measure and print.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
from mcp import ClientSession, StdioServerParameters
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

from agentseat.tools.channel import METHOD, ChannelParams

#: The checkout this bench belongs to: its processes import agentseat from here, whatever is installed.
REPO = Path(__file__).resolve().parent.parent
#: Keys never touch a real keyring: the agent's key passphrase comes from settings.
KEYRING_ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment additions for every process the bench starts."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**KEYRING_ENV, "PYTHONPATH": path, **(extra or {})}
#: Safety bound for waits; a wait ends as soon as its condition holds.
BOUND = 120.0


_log_path: Path | None = None


def quiet_logging(path: Path | None = None) -> None:
    """Send the bench process's own logs (mostly the sandbox's) to a file, warnings only:
    stdout is the report. Without `path`, the last file is used again."""
    global _log_path
    from agentseat.logging import configure

    _log_path = path or _log_path
    stream = _log_path.open("a") if _log_path is not None else sys.stderr
    configure("warning", "console", stream=stream)


# --- the sandbox ---------------------------------------------------------------------------------------------
class SandboxHost:
    """The sandbox in its own process (bench/sandbox_server.py), and a client for it.

    Use as `async with SandboxHost(root) as host:`. `now()` is the sandbox clock, read in
    this process: the sandbox reports its clock and CLOCK_MONOTONIC together, and
    monotonic time is shared by every process, so the conversion is exact.
    """

    def __init__(self, root: Path, *, speed: float = 1.0) -> None:
        self.root = root
        self.speed = speed
        self.url = ""
        self.upns: dict[str, str] = {}
        self.pid = 0
        self._process: anyio.abc.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._clock = (0.0, 0.0, 1.0)  # sandbox now, monotonic, speed: read together

    async def __aenter__(self) -> SandboxHost:
        state = self.root / "sandbox"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._log = (self.root / "sandbox.log").open("ab")
        self._process = await anyio.open_process(
            [sys.executable, "-m", "bench.sandbox_server", "--dir", str(state), "--speed", str(self.speed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=str(REPO),
            env={**os.environ, **child_env()})
        self.pid = self._process.pid
        assert self._process.stdout is not None
        line = b""
        with anyio.fail_after(BOUND):
            async for chunk in self._process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        ready = json.loads(line.split(b"\n", 1)[0])
        self.url, self.ca_path = ready["url"], ready["ca"]
        ssl_ctx = ssl.create_default_context(cafile=self.ca_path)
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=64))
        await self.sync_clock()
        users = (await self.request("GET", "/_sandbox/users"))["users"]
        self.upns = {role: u["upn"] for u in users for role in u["roles"]}
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            if self._http is not None:
                await self._http.close()
            if self._process is not None:
                assert self._process.stdin is not None
                await self._process.stdin.aclose()  # the sandbox stops when its stdin closes
                with anyio.move_on_after(10):
                    await self._process.wait()
                if self._process.returncode is None:
                    self._process.kill()
                    await self._process.wait()
            self._log.close()

    # --- clock -----------------------------------------------------------------------------
    async def sync_clock(self) -> None:
        data = await self.request("GET", "/_bench/clock")
        self._clock = (data["now"], data["mono"], data["speed"])

    def now(self) -> float:
        """The sandbox clock, read here (exact while the speed is unchanged)."""
        now, mono, speed = self._clock
        return now + (time.monotonic() - mono) * speed

    async def set_speed(self, speed: float) -> None:
        await self.request("POST", "/_sandbox/clock", {"speed": speed})
        await self.sync_clock()

    # --- HTTP --------------------------------------------------------------------------------
    async def request(self, method: str, path: str, body: Any = None) -> Any:
        assert self._http is not None
        async with self._http.request(method, self.url + path, json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"sandbox {method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    def upn(self, role: str) -> str:
        return self.upns[role]

    async def dm(self, sender_upn: str, to_upn: str, text: str) -> dict[str, Any]:
        return await self.request("POST", "/_sandbox/messages", {"from": sender_upn, "to": to_upn, "text": text})  # type: ignore[no-any-return]

    async def mail(self, sender: str, to: str, subject: str, body: str) -> dict[str, Any]:
        return await self.request("POST", "/_sandbox/mail", {"from": sender, "to": to, "subject": subject, "body": body})  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        return await self.request("GET", "/_sandbox/stats")  # type: ignore[no-any-return]

    async def created_times(self) -> dict[str, float]:
        return await self.request("GET", "/_bench/created")  # type: ignore[no-any-return]

    async def sends(self) -> dict[str, tuple[float, float]]:
        return await self.request("GET", "/_bench/sends")  # type: ignore[no-any-return]

    async def live_subscriptions(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/_bench/subscriptions"))["subscriptions"]  # type: ignore[no-any-return]

    async def drop_subscriptions(self) -> None:
        await self.request("DELETE", "/_bench/subscriptions")

    async def seed(self, chats: int = 20, mails: int = 2) -> list[str]:
        """`chats` chats with the agent, one old message each, and a few old mails (idle benchmark)."""
        return (await self.request("POST", "/_bench/seed", {"chats": chats, "mails": mails}))["chats"]  # type: ignore[no-any-return]

    async def notification_bodies(self, posts: int, batch: int, *, fresh_tokens: bool = True,
                                  synthetic: dict[str, str] | None = None) -> list[tuple[list[str], bytes]]:
        data = await self.request("POST", "/_bench/notifications", {"posts": posts, "batch": batch,
                                  "fresh_tokens": fresh_tokens, "synthetic": synthetic})
        return [(p["ids"], p["body"].encode()) for p in data["posts"]]

    # --- the agent -----------------------------------------------------------------------------
    async def provision(self, state_dir: Path, **overrides: object) -> dict[str, str]:
        """A working agent without `agentseat setup` (as tests/conftest.py's `provision_agent`):
        its key in a KeyStore under `state_dir`, its certificate appended to the Blueprint,
        delegated consent. Returns the AGENTSEAT_* environment `agentseat serve` needs."""
        from cryptography.hazmat.primitives.serialization import Encoding

        from agentseat.identity.keys import KeyStore, generate_certificate

        os.environ.update(KEYRING_ENV)
        cert = generate_certificate("agentseat bench agent")
        der = cert.certificate.public_bytes(Encoding.DER)
        answer = await self.request("POST", "/_bench/agent", {"der_b64": base64.b64encode(der).decode()})
        env: dict[str, str] = dict(answer["settings"])
        env |= {
            "AGENTSEAT_STATE_DIR": str(state_dir),
            "AGENTSEAT_CONFIG_FILE": str(state_dir / "agentseat.env"),
            "AGENTSEAT_KEY_PASSPHRASE": "bench-passphrase-not-secret",
            "AGENTSEAT_TUNNEL": "loopback",
            "AGENTSEAT_LOG_LEVEL": "info",
            "AGENTSEAT_CERT_THUMBPRINT": cert.sha1_thumbprint,
            # The bench measures delivery paths: colleagues' messages stored from their
            # notifications (untrusted), the sponsor's confirmed with Graph. Under the default
            # `pairing` policy the colleagues would be held, which is access, not delivery.
            "AGENTSEAT_INBOUND_POLICY": "tenant",
        }
        env |= {f"AGENTSEAT_{k.upper()}": str(v) for k, v in overrides.items()}
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        KeyStore(settings_from_env(env)).add(cert)
        return env


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc; none elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def settings_from_env(env: dict[str, str]) -> Any:
    from agentseat.config import Settings

    return Settings(_env_file=None, **{k[len("AGENTSEAT_"):].lower(): v for k, v in env.items()})  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the runtime under test: `agentseat serve` + a real MCP client ---------------------------------------
@dataclass
class Push:
    at: float  # sandbox time the client's binding handler ran
    message_id: str
    chat_id: str
    kind: str
    #: sandbox time the client's stdio transport had read and parsed the push's line (before the
    #: session's dispatch): the end of "pipe write + parse", the floor bench/floors.py measures.
    parsed_at: float = 0.0


@dataclass
class Served:
    """A running `agentseat serve`: its MCP session, pid, log, and every channel push received."""

    spawned_at: float
    log_path: Path
    state_dir: Path | None = None
    session: ClientSession | None = None
    initialized_at: float = 0.0
    pid: int = 0
    pushes: list[Push] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def pids(self) -> list[int]:
        """The process(es) taking the items (bench/throughput.py's `Consumer`): `serve` and the
        intake processes it started (AGENTSEAT_INTAKE_PROCESSES), whose CPU is the item's too."""
        return [self.pid, *children(self.pid)] if self.pid else []

    def on_push(self, push: Push) -> None:
        self.pushes.append(push)
        self._changed.set()

    def received(self, ids: Iterable[str]) -> dict[str, Push]:
        wanted = set(ids)
        return {p.message_id: p for p in self.pushes if p.message_id in wanted}

    async def wait_for(self, ids: Iterable[str], timeout: float) -> bool:
        """Until every id was pushed (True) or `timeout` seconds passed (False)."""
        wanted = set(ids)
        with anyio.move_on_after(timeout):
            while not wanted <= {p.message_id for p in self.pushes}:
                self._changed = anyio.Event()
                await self._changed.wait()
            return True
        return False

    async def status(self) -> dict[str, Any]:
        assert self.session is not None
        result = await self.session.call_tool("status", {})
        return json.loads(result.content[0].text)  # type: ignore[union-attr,no-any-return]


def _child_pid(parent: int, marker: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == parent and marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@asynccontextmanager
async def serve(env: dict[str, str], workdir: Path, name: str, now: Callable[[], float],
                *, initialized: Callable[[], Awaitable[Any]] | None = None) -> AsyncIterator[Served]:
    """`agentseat serve` in a subprocess, connected over stdio with a channel binding.

    `initialized`, if given, is awaited right after `initialize` returns (cold start posts
    its DM there). Leaving the block closes stdin, which stops the server as a host would.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentseat.cli", "serve"],
                                   env=child_env(env), cwd=str(workdir))
    log_path = workdir / f"{name}.log"
    state = env.get("AGENTSEAT_STATE_DIR")
    served = Served(spawned_at=now(), log_path=log_path, state_dir=Path(state) if state else None)

    parsed: dict[str, float] = {}  # message id -> when the transport handed its push over

    async def on_channel(p: ChannelParams) -> None:
        meta = p.meta or {}
        mid = meta.get("message_id", "")
        served.on_push(Push(now(), mid, meta.get("chat_id", ""), meta.get("kind", ""), parsed.pop(mid, 0.0)))

    binding = NotificationBinding(method=METHOD, params_type=ChannelParams, handler=on_channel)
    with log_path.open("a") as errlog:
        served.spawned_at = now()
        async with stdio_client(params, errlog=errlog) as (transport, write), anyio.create_task_group() as relay:
            read = _stamping(transport, parsed, now, relay)
            try:
                async with ClientSession(read, write, notification_bindings=[binding]) as session:
                    with anyio.fail_after(BOUND):
                        await session.initialize()
                    served.session, served.initialized_at = session, now()
                    if initialized is not None:
                        await initialized()
                    served.pid = _child_pid(os.getpid(), "agentseat.cli serve") or 0
                    yield served
            finally:
                relay.cancel_scope.cancel()  # the transport ends only after stdio_client's own exit


def _stamping(transport: Any, parsed: dict[str, float], now: Callable[[], float],
              tg: anyio.abc.TaskGroup) -> Any:
    """The transport's read stream, relayed, noting when each channel push came out of it."""
    send, receive = anyio.create_memory_object_stream[Any](0)

    async def relay() -> None:
        async with send, transport:
            async for message in transport:
                inner = getattr(message, "message", None)
                root = getattr(inner, "root", inner)  # a RootModel in mcp 1.x, the message itself in 2.x
                params = getattr(root, "params", None)
                if getattr(root, "method", None) == METHOD and isinstance(params, dict):
                    parsed[str((params.get("meta") or {}).get("message_id", ""))] = now()
                await send.send(message)

    tg.start_soon(relay)
    return receive


# --- process and machine facts -----------------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak RSS) of `pid` in MB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        model = platform.processor()
    ram_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO, timeout=5).stdout.strip()
        # Uncommitted changes to the package: the figures are of the working tree, not of the commit.
        if commit and subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "agentseat"], cwd=REPO,
                                     timeout=5).returncode:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"cpu": model, "cores": os.cpu_count() or 0, "ram_gb": ram_gb, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}", "commit": commit, "loadavg_start": loadavg()}


def loadavg() -> float:
    """The 1-minute load average: other work on the machine skews every timing here."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def import_seconds(repeat: int = 3) -> float:
    """Fastest wall time of a fresh interpreter importing what `agentseat serve` imports."""
    code = "import agentseat.cli, agentseat.tools.server, agentseat.runtime.app"
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **child_env()}, cwd=str(REPO))
        best = min(best, time.perf_counter() - began)
    return round(best, 3)


# --- statistics --------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds, plus the sample count."""
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": round(percentile(ms, 50), 2), "p95": round(percentile(ms, 95), 2),
            "p99": round(percentile(ms, 99), 2), "max": round(max(ms), 2) if ms else float("nan")}


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    return path
