"""The sandbox server: one aiohttp app on loopback HTTPS with Entra, Graph and control routes.

`Sandbox` owns the tenant, PKI, clock, faults, throttle, stats and delivery
engine, and wires the route modules together. Use it as an async context
manager (tests, `agentseat demo`) or run it in the foreground (`agentseat sandbox`).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import structlog
from aiohttp import web

from . import (
    control,
    delivery,
    entra,
    graph_chats,
    graph_chats_messages,
    graph_directory,
    graph_mail,
    graph_mail_delta,
    graph_subscriptions,
)
from .auth import SANDBOX_KEY, graph_middleware
from .clock import Clock
from .envfile import write_sandbox_env
from .faults import Faults
from .pki import SandboxPki, ensure_provisioner_credential
from .stats import Stats
from .tenant import Tenant, demo_tenant, load_tenant, save_tenant
from .throttle import Throttle

log = structlog.get_logger(__name__)


@dataclass
class SandboxOptions:
    """Emulator knobs. Lifetimes are configurable because the docs disagree
    (subscription resource vs. older Teams pages: 4,320 vs. 60 minutes)."""

    host: str = "127.0.0.1"
    port: int = 0
    speed: float = 1.0
    allow_http_loopback: bool = True  # stands in for the tunnel's TLS in tests and the demo
    chat_max_minutes: int = 4320
    mail_max_minutes: int = 10080
    mail_rich_max_minutes: int = 1440
    access_token_seconds: int = 3600
    validation_timeout: float = 10.0
    delivery_timeout: float = 3.0
    retry_timeout: float = 10.0
    retry_window: float = 4 * 3600.0
    throttle: bool = True
    #: Added to every Graph response (not Entra's, not the control API): loopback makes a GET
    #: nearly free, a real tenant does not. `POST /_sandbox/latency {"graph_ms": N}` changes it.
    graph_latency_ms: float = 0.0
    reset: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    """A local Microsoft 365 tenant: Entra token endpoint, a Graph subset,
    change-notification delivery and the `/_sandbox/` control API."""

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.options = options or SandboxOptions()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.options.reset:
            (self.state_dir / "tenant.json").unlink(missing_ok=True)
        self.pki = SandboxPki(self.state_dir / "pki")
        self.tenant: Tenant = load_tenant(self.state_dir) or demo_tenant()
        self.clock = Clock(self.options.speed)
        self.stats = Stats()
        self.faults = Faults()
        self.throttle = Throttle(self.clock)
        self.throttle.enabled = self.options.throttle
        self.graph_latency_ms = self.options.graph_latency_ms
        self.delivery = delivery.DeliveryEngine(self)
        ensure_provisioner_credential(self.tenant, self.pki.directory, self.tenant.roles["provisioner"])
        self.url = ""
        self._dirty = True
        self._runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    # --- persistence -------------------------------------------------------------
    def mark_dirty(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            save_tenant(self.tenant, self.state_dir)
            self._dirty = False

    async def _flusher(self) -> None:
        while True:
            await anyio.sleep(0.5)
            self.flush()

    # --- server --------------------------------------------------------------------
    @property
    def env_path(self) -> Path:
        return self.state_dir / "sandbox.env"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_cert_path, self.pki.server_key_path)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts the sandbox CA and the system roots (for clients inside tests)."""
        return ssl.create_default_context(cafile=str(self.pki.ca_path))

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[graph_middleware], client_max_size=8 * 1024 * 1024)
        app[SANDBOX_KEY] = self
        # Order matters: aiohttp matches in registration order, and the more specific
        # getAllMessages and /messages/delta routes must come before `{chat_id}`/`{message_id}`.
        modules = (entra, graph_directory, graph_chats_messages, graph_chats, graph_mail_delta, graph_mail,
                   graph_subscriptions, control)
        for module in modules:
            app.router.add_routes(module.routes())
        return app

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Sandbox]:
        """Serve until the block exits; everything started here stops with it."""
        self.http = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port, ssl_context=self.ssl_context())
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://{'localhost' if self.options.host in ('127.0.0.1', 'localhost') else self.options.host}:{port}"
        write_sandbox_env(self)
        log.info("sandbox_started", url=self.url, env=str(self.env_path))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flusher)
                await tg.start(self.delivery.run)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                self.flush()
                await self._runner.cleanup()
                await self.http.close()
            log.info("sandbox_stopped")

    async def __aenter__(self) -> Sandbox:
        self._cm = self.running()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)  # type: ignore[arg-type]

    # --- convenient URLs -------------------------------------------------------------
    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/{self.tenant.tenant_id}/oauth2/v2.0/token"

    def role(self, name: str) -> str:
        """Well-known object ids of the demo organization (sponsor, agent_user, ...)."""
        return self.tenant.roles[name]
