"""An ngrok agent, driven through pyngrok, from a binary that is already installed.

This module owns finding the ngrok binary, starting one agent with one https
endpoint, watching that the endpoint stays up, and tearing it down. It never lets
pyngrok download ngrok (pyngrok would fetch it from bin.ngrok.com when the binary is
missing): a missing binary is a `TunnelError` with a hint instead.

pyngrok keeps one agent per binary path in module state: two `NgrokTunnel`s on one
binary in one process share it, and stopping either kills it (agentseat runs one).

The authtoken never reaches a log line or ngrok's command line (which other local
users can read in /proc): it is written to a private 0600 config file in a 0700
temp directory that `stop()` deletes. Only when the caller supplies its own config
file (`config_path`) is the token passed the pyngrok way, as `--authtoken`.

The endpoint starts with request inspection off. With it on, the agent keeps every
request body in its local inspector (http://127.0.0.1:4040), where any local process can
read it and replay it: a Graph notification POST carries the subscription's clientState
and a live validation token.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import structlog
from pyngrok import conf, ngrok
from pyngrok import process as pyngrok_process
from pyngrok.exception import PyngrokError
from pyngrok.ngrok import NgrokTunnel as _PyngrokTunnel
from pyngrok.process import NgrokProcess

from agentseat.errors import TunnelError

log = structlog.get_logger(__name__)

_FALLBACK_HINT = "or use --tunnel static with AGENTSEAT_PUBLIC_URL, or --mode poll"
NO_BINARY_HINT = (
    "install the ngrok v3 agent (https://ngrok.com/download) and put it on PATH or set "
    f"AGENTSEAT_NGROK_PATH; agentseat never downloads it; {_FALLBACK_HINT}"
)
# One failed request to ngrok's local API can be a hiccup; a dead process or a
# missing endpoint cannot, so only API errors get a second chance.
_API_FAILURES_BEFORE_LOST = 2


def find_ngrok_binary(configured: Path | None) -> Path:
    """The ngrok agent to run: the configured path, else the first real `ngrok` on PATH."""
    if configured is not None:
        path = configured.expanduser().absolute()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TunnelError(f"no executable ngrok binary at {path}", hint=NO_BINARY_HINT)
        if _is_pyngrok_script(path):
            raise TunnelError(f"{path} is pyngrok's `ngrok` script, not the agent", hint=NO_BINARY_HINT)
        return path
    for directory in os.get_exec_path():
        found = shutil.which("ngrok", path=directory)
        if found is not None and not _is_pyngrok_script(Path(found)):
            return Path(found).absolute()
    raise TunnelError("no ngrok agent on PATH and AGENTSEAT_NGROK_PATH is not set", hint=NO_BINARY_HINT)


def _is_pyngrok_script(path: Path) -> bool:
    # Installing pyngrok puts an `ngrok` console script next to `agentseat`; it
    # downloads the real agent when run, so it must never be mistaken for one.
    # The script text sits at the start (POSIX) or the end (Windows launcher).
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            tail = handle.read()
    except OSError:
        return False
    return b"pyngrok" in head or b"pyngrok" in tail


def _upstream_url(host: str, port: int) -> str:
    # A wildcard bind address is not something ngrok can dial; its loopback twin is.
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass
class _Session:
    """One running agent with our endpoint on it."""
    config: conf.PyngrokConfig
    process: NgrokProcess
    endpoint: _PyngrokTunnel
    public_url: str
    stopped: anyio.Event
    temp_dir: Path | None


class NgrokTunnel:
    """A public https URL from an ngrok agent, watched for loss."""

    def __init__(self, ngrok_path: Path | None, authtoken: str | None, config_path: Path | None = None,
                 check_interval: float = 5.0, *, upstream_host: str = "127.0.0.1", startup_timeout: int = 15) -> None:
        if check_interval <= 0:
            raise ValueError("check_interval must be positive")
        self._ngrok_path = ngrok_path
        self._authtoken = authtoken or None
        self._config_path = config_path
        self._check_interval = check_interval
        self._upstream_host = upstream_host
        self._startup_timeout = startup_timeout
        self._session: _Session | None = None
        self._starting = False

    def __repr__(self) -> str:
        # Spelled out so the authtoken can never appear in a repr.
        return f"NgrokTunnel(public_url={self.public_url!r})"

    @property
    def public_url(self) -> str | None:
        return self._session.public_url if self._session else None

    async def start(self, port: int) -> str:
        if self._session is not None or self._starting:
            raise TunnelError("the ngrok tunnel is already started", hint="call stop() before starting it again")
        # Checked here, before pyngrok sees the path, because pyngrok downloads
        # ngrok into any path that does not exist.
        binary = find_ngrok_binary(self._ngrok_path)
        stopped = anyio.Event()
        self._starting = True
        try:
            await anyio.to_thread.run_sync(self._start_blocking, binary, port, stopped)
        except anyio.get_cancelled_exc_class():
            # The worker thread ran to completion and may have left an agent running.
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise
        finally:
            self._starting = False
        session = self._session
        assert session is not None  # set by _start_blocking or it raised
        log.info("tunnel_started", kind="ngrok", public_url=session.public_url, binary=str(binary),
                 authtoken_configured=self._authtoken is not None)
        return session.public_url

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        session.stopped.set()
        # Shutdown arrives as a cancellation; the agent must still be killed.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_teardown, session)
        log.info("tunnel_stopped", kind="ngrok", public_url=session.public_url)

    async def wait_lost(self) -> None:
        session = self._session
        if session is None:
            return
        api_failures = 0
        while True:
            with anyio.move_on_after(self._check_interval):
                await session.stopped.wait()
                return
            # A probe only reads, so a cancelled caller need not wait for it.
            reason = await anyio.to_thread.run_sync(_probe, session, abandon_on_cancel=True)
            if reason is None:
                api_failures = 0
                continue
            if reason == "api_unreachable":
                api_failures += 1
                if api_failures < _API_FAILURES_BEFORE_LOST:
                    continue
            if session.stopped.is_set():
                return  # stop() raced the probe: a stop, not a loss
            log.warning("tunnel_lost", kind="ngrok", reason=reason, public_url=session.public_url)
            return

    # --- blocking work, run in a worker thread --------------------------------

    def _start_blocking(self, binary: Path, port: int, stopped: anyio.Event) -> None:
        temp_dir, config_path = self._write_config()
        config = conf.PyngrokConfig(
            ngrok_path=str(binary),
            config_path=str(config_path),
            startup_timeout=self._startup_timeout,
            # pyngrok's own thread drains ngrok's stdout; without it a chatty
            # agent fills the pipe and blocks.
            monitor_thread=True,
        )
        # PyngrokConfig copies NGROK_AUTHTOKEN from the environment onto ngrok's
        # command line; the agent reads that variable itself, so keep it off argv.
        config.auth_token = self._authtoken if temp_dir is None else None
        try:
            endpoint = ngrok.connect(
                _upstream_url(self._upstream_host, port),
                "http",
                name=f"agentseat-{uuid.uuid4().hex[:12]}",
                pyngrok_config=config,
                inspect=False,  # never keep request bodies in the agent's inspector
            )
            process = ngrok.get_ngrok_process(config)
        except (PyngrokError, OSError) as exc:
            _kill(config, None)
            _remove(temp_dir)
            raise self._start_error(exc) from exc
        url = endpoint.public_url or ""
        if urlsplit(url).scheme != "https":
            # Rewriting http to https could name an endpoint that does not serve TLS.
            _kill(config, process)
            _remove(temp_dir)
            raise TunnelError(
                f"ngrok gave a non-https URL {url!r}; Graph delivers only to https",
                hint=f"remove any http-only endpoint settings from the ngrok config, {_FALLBACK_HINT}",
            )
        self._session = _Session(config, process, endpoint, url, stopped, temp_dir)

    def _write_config(self) -> tuple[Path | None, Path]:
        """Return (temp dir to delete on stop, config path). pyngrok writes nothing."""
        if self._config_path is not None:
            path = self._config_path.expanduser()
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.touch(mode=0o600)
            return None, path
        temp_dir = Path(tempfile.mkdtemp(prefix="agentseat-ngrok-"))  # mode 0700
        path = temp_dir / "ngrok.yml"
        document: dict[str, object] = {"version": "3"}
        if self._authtoken is not None:
            document["agent"] = {"authtoken": self._authtoken}
        # JSON is valid YAML, and dumping it needs no YAML library of our own.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        return temp_dir, path

    def _start_error(self, exc: BaseException) -> TunnelError:
        text = str(exc)
        if self._authtoken:
            text = text.replace(self._authtoken, "[redacted]")
        if any(marker in text.lower() for marker in ("authtoken", "err_ngrok_4018", "err_ngrok_105")):
            hint = f"set AGENTSEAT_NGROK_AUTHTOKEN to the authtoken from dashboard.ngrok.com, {_FALLBACK_HINT}"
        else:
            hint = f"check that the ngrok binary is a v3 agent and can reach ngrok.com, {_FALLBACK_HINT}"
        return TunnelError(f"ngrok could not start: {text}", hint=hint)


def _probe(session: _Session) -> str | None:
    """None while healthy, else why the tunnel is lost."""
    # The process and the agent API directly: pyngrok's `get_tunnels` would start
    # a new agent if ours had died, hiding the loss.
    if session.process.proc.poll() is not None:
        return "process_exited"
    try:
        url = f"{session.process.api_url}/api/endpoints"
        listing = ngrok.api_request(url, method="GET", timeout=session.config.request_timeout)
    except (PyngrokError, OSError):
        return "api_unreachable"
    items = listing.get("endpoints") or listing.get("tunnels") or []
    urls = {item.get("public_url", item.get("url")) for item in items if isinstance(item, dict)}
    return None if session.public_url in urls else "tunnel_missing"


def _teardown(session: _Session) -> None:
    if session.process.proc.poll() is None and session.endpoint.uri:
        try:
            # Direct API call: pyngrok's `disconnect` may respawn a dead agent.
            url = f"{session.process.api_url}{session.endpoint.uri}"
            ngrok.api_request(url, method="DELETE", timeout=session.config.request_timeout)
        except (PyngrokError, OSError) as exc:
            log.debug("tunnel_disconnect_failed", kind="ngrok", error=type(exc).__name__)
    _kill(session.config, session.process)
    _remove(session.temp_dir)


def _kill(config: conf.PyngrokConfig, process: NgrokProcess | None) -> None:
    if process is None and pyngrok_process.is_process_running(config.ngrok_path):
        process = ngrok.get_ngrok_process(config)  # running, so pyngrok returns it without a restart
    try:
        ngrok.kill(config)
    except (PyngrokError, OSError) as exc:
        log.warning("tunnel_kill_failed", kind="ngrok", error=type(exc).__name__)
    if process is None:
        return
    # pyngrok kills the agent it tracks for this path; ours may no longer be it.
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()
    # pyngrok never closes the agent's stdout pipe and keeps the Popen in an atexit
    # hook, so each restart would leak a descriptor. Its log thread (private, hence
    # getattr) reads that pipe to EOF; let it finish before closing.
    if (reader := getattr(process, "_monitor_thread", None)) is not None:
        reader.join(timeout=2)
    if process.proc.stdout is not None and (reader is None or not reader.is_alive()):
        process.proc.stdout.close()


def _remove(temp_dir: Path | None) -> None:
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)
