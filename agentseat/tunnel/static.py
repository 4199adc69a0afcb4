"""Tunnels that agentseat does not run: a URL the user already has, and loopback.

`StaticTunnel` is for a public URL the user operates themselves (a reverse proxy,
Microsoft dev tunnels, cloudflared, Tailscale Funnel). `LoopbackTunnel` stands in
for a tunnel in the sandbox and the demo, where Graph is simulated on this machine
and plain http on 127.0.0.1 takes the place of the tunnel's TLS. Both live here,
not in `base.py`, because they are implementations that share one behaviour: they
cannot observe their own health, so `wait_lost()` returns only on `stop()`.

This module does not start processes or open sockets.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import anyio
import structlog

from agentseat.errors import ConfigError

log = structlog.get_logger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (brackets allowed)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_public_url(url: str) -> str:
    """Return `url` unchanged if Graph can deliver to it, else raise `ConfigError`.

    Graph only delivers change notifications to https endpoints (webhook delivery,
    "notificationUrl"); http is accepted for loopback hosts so the local sandbox can
    stand in for the tunnel's TLS.
    """
    hint = "set AGENTSEAT_PUBLIC_URL to the https URL that forwards to this machine, or use --mode poll"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on an out-of-range or non-numeric port
    except ValueError as exc:
        raise ConfigError(f"public URL {url!r} is not a valid URL: {exc}", hint=hint) from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"public URL {url!r} is not an absolute http(s) URL", hint=hint)
    if parts.username is not None or parts.password is not None:
        # Credentials in the URL would be handed to Microsoft in every subscription.
        raise ConfigError("public URL must not contain credentials", hint=hint)
    if parts.fragment:
        raise ConfigError(f"public URL {url!r} has a fragment, which is never sent to a server", hint=hint)
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(f"public URL {url!r} is plain http; Graph requires https", hint=hint)
    return url


class StaticTunnel:
    """A public URL the user already runs; agentseat only reports it."""

    def __init__(self, url: str) -> None:
        self._url = validate_public_url(url)
        self._stopped: anyio.Event | None = None

    @property
    def public_url(self) -> str | None:
        return self._url

    async def start(self, port: int) -> str:
        # The forwarding to `port` is the user's job; we cannot check it from here
        # without a request through the public internet.
        self._stopped = anyio.Event()
        log.info("tunnel_started", kind="static", public_url=self._url, port=port)
        return self._url

    async def stop(self) -> None:
        if self._stopped is not None and not self._stopped.is_set():
            self._stopped.set()
            log.info("tunnel_stopped", kind="static")

    async def wait_lost(self) -> None:
        if self._stopped is None:
            return  # never started: nothing is being served
        await self._stopped.wait()


class LoopbackTunnel:
    """`http://127.0.0.1:{port}`: the sandbox's stand-in for a real tunnel."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        if not is_loopback_host(host):
            raise ConfigError(f"loopback tunnel host {host!r} is not a loopback address", hint="use 127.0.0.1")
        self._host = f"[{host.strip('[]')}]" if ":" in host else host
        self._url: str | None = None
        self._stopped: anyio.Event | None = None

    @property
    def public_url(self) -> str | None:
        return self._url

    async def start(self, port: int) -> str:
        if not 0 < port < 65536:
            raise ConfigError(f"port {port} is not a bound TCP port", hint="start the webhook server first")
        self._url = f"http://{self._host}:{port}"
        self._stopped = anyio.Event()
        log.info("tunnel_started", kind="loopback", public_url=self._url)
        return self._url

    async def stop(self) -> None:
        if self._stopped is not None and not self._stopped.is_set():
            self._stopped.set()
            self._url = None
            log.info("tunnel_stopped", kind="loopback")

    async def wait_lost(self) -> None:
        if self._stopped is None:
            return
        await self._stopped.wait()
