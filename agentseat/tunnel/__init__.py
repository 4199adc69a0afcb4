"""Tunnels: how Graph reaches the local webhook.

`make_tunnel(settings)` picks the implementation named by `settings.tunnel`. The
loopback stand-in used by the sandbox and the demo is not a setting value
(`TunnelKind` is ngrok | static | none); the code that runs the sandbox builds a
`LoopbackTunnel` itself. The ngrok module (and pyngrok, which pulls in PyYAML and
requests) is imported only when an ngrok tunnel is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentseat.config import Settings
from agentseat.errors import ConfigError
from agentseat.tunnel.base import Tunnel
from agentseat.tunnel.static import LoopbackTunnel, StaticTunnel, is_loopback_host, validate_public_url

__all__ = [
    "LoopbackTunnel",
    "NgrokTunnel",
    "StaticTunnel",
    "Tunnel",
    "find_ngrok_binary",
    "is_loopback_host",
    "make_tunnel",
    "validate_public_url",
]

if TYPE_CHECKING:
    from agentseat.tunnel.ngrok import NgrokTunnel, find_ngrok_binary


def __getattr__(name: str) -> Any:
    """`NgrokTunnel` and `find_ngrok_binary`, imported on first use (PEP 562)."""
    if name in ("NgrokTunnel", "find_ngrok_binary"):
        from agentseat.tunnel import ngrok

        return getattr(ngrok, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_tunnel(settings: Settings) -> Tunnel | None:
    """The tunnel `settings.tunnel` asks for; None for "none" (no public endpoint: poll)."""
    if settings.tunnel == "none":
        return None
    if settings.tunnel == "static":
        if not settings.public_url:
            raise ConfigError(
                "--tunnel static needs the public URL that forwards to this machine",
                hint="set AGENTSEAT_PUBLIC_URL to its https URL, or use --tunnel ngrok or --mode poll",
            )
        return StaticTunnel(settings.public_url)
    from agentseat.tunnel.ngrok import NgrokTunnel

    token = settings.ngrok_authtoken.get_secret_value() if settings.ngrok_authtoken else None
    return NgrokTunnel(settings.ngrok_path, token, upstream_host=settings.webhook_host)
