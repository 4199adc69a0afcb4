"""The Tunnel protocol: how a local webhook port becomes a public https URL.

This module owns the contract only. Implementations live next to it:
`static.py` (a URL the user already has, and the loopback stand-in used by the
sandbox and demo) and `ngrok.py` (an ngrok agent driven through pyngrok). What
the runtime does when a tunnel is lost (poll, restart) is decided in
`runtime/app.py`, not here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Tunnel(Protocol):
    """Exposes a local port at a public URL and reports when that stops working.

    Lifecycle: `start(port)` once, then `wait_lost()` in a task the caller owns,
    then `stop()`. After `stop()` a tunnel may be started again.
    """

    @property
    def public_url(self) -> str | None:
        """The public base URL while started, else None (static tunnels know it earlier)."""
        ...

    async def start(self, port: int) -> str:
        """Start forwarding to `port` on this machine and return the public base URL.

        The URL is https, except loopback URLs used by the sandbox, where plain http
        on 127.0.0.1 stands in for the tunnel's TLS. Raises `TunnelError` (or
        `ConfigError` for a bad setting) with a hint when the tunnel cannot start.
        """
        ...

    async def stop(self) -> None:
        """Tear the tunnel down. Idempotent and safe to call from a cancelled scope."""
        ...

    async def wait_lost(self) -> None:
        """Return when the tunnel no longer serves the URL: lost, or `stop()` was called.

        A tunnel that cannot observe its health (a static URL) returns only on
        `stop()`. The caller tells a loss from a stop by whether it called `stop()`.
        Cancelling this call is the normal way to stop watching.
        """
        ...
