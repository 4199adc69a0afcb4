"""The sandbox's shared state: what every emulated service reads and changes.

Routes, the delivery engine and the control API take a `SandboxState`; only
`app.py` knows how the server is assembled, so no route imports the app.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web

from .behaviour import Behaviour
from .clock import Clock
from .entra.replication import Replication
from .faults import Faults
from .graph.provisioning import Provisioning
from .graph.throttle import Throttle
from .pki import SandboxPki, ensure_provisioner_credential
from .stats import Stats
from .tenant import Tenant, demo_tenant, load_tenant, save_tenant

if TYPE_CHECKING:
    from .eventhubs.emulator import EventHubs
    from .tenant import Channel, ChannelMessage, Chat, ChatMessage, MailMessage, Subscription, Team


@dataclass
class SandboxOptions:
    """Emulator knobs. Lifetimes are configurable because the docs disagree
    (subscription resource vs. older Teams pages: 4,320 vs. 60 minutes)."""

    host: str = "127.0.0.1"
    port: int = 0
    speed: float = 1.0
    allow_http_loopback: bool = True  # stands in for the tunnel's TLS in tests and the demo
    mail_max_minutes: int = 10080
    mail_rich_max_minutes: int = 1440
    access_token_seconds: int = 3600
    validation_timeout: float = 10.0
    delivery_timeout: float = 3.0
    retry_timeout: float = 10.0
    retry_window: float = 4 * 3600.0
    throttle: bool = True
    #: The behaviour switchboard's starting values (`GET/POST /_sandbox/behaviour`):
    #: every variant Microsoft's docs leave open. Validated by `Behaviour.merged`.
    behaviour: dict[str, Any] = field(default_factory=dict)
    reset: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    """What routes ask of change-notification delivery (notifications/delivery.py)."""

    def chat_message(self, chat: Chat, msg: ChatMessage, change_type: str = ...) -> object: ...
    def channel_message(self, team: Team, channel: Channel, msg: ChannelMessage,
                        change_type: str = ...) -> object: ...
    def mail_message(self, msg: MailMessage, change_type: str = ...) -> object: ...
    def lifecycle(self, sub: Subscription, event: str) -> object: ...
    def refreshed(self, sub: Subscription) -> None: ...
    def forget(self, subscription_id: str) -> None: ...
    async def validate_url(self, url: str) -> str | None: ...


class SandboxState:
    """The tenant and the emulator's machinery, shared by every route."""

    delivery: Notifier  # set by the app, which owns the engine's task
    eventhubs: EventHubs  # set by the app, which owns the AMQP listener's task

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.options = options or SandboxOptions()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.options.reset:
            (self.state_dir / "tenant.json").unlink(missing_ok=True)
        self.pki = SandboxPki(self.state_dir / "pki")
        loaded = load_tenant(self.state_dir)
        self.tenant: Tenant = loaded or demo_tenant()
        self.clock = Clock(self.options.speed)
        #: When each Agent User's mailbox and Teams presence started provisioning.
        self.provisioning = Provisioning(self.clock, self.tenant, fresh=loaded is None)
        self.stats = Stats()
        self.faults = Faults()
        self.behaviour = Behaviour().merged(self.options.behaviour)
        self.replication = Replication(self.clock)  # what Entra wrote but cannot show yet
        self.throttle = Throttle(self.clock)
        self.throttle.enabled = self.options.throttle
        ensure_provisioner_credential(self.tenant, self.pki.directory, self.tenant.roles["provisioner"])
        self.url = ""
        self.http: aiohttp.ClientSession | None = None
        self._dirty = True

    # --- persistence -------------------------------------------------------------
    def mark_dirty(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            save_tenant(self.tenant, self.state_dir)
            self._dirty = False

    # --- addresses -----------------------------------------------------------------
    @property
    def env_path(self) -> Path:
        return self.state_dir / "sandbox.env"

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

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_cert_path, self.pki.server_key_path)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts the sandbox CA and the system roots (for clients inside tests)."""
        return ssl.create_default_context(cafile=str(self.pki.ca_path))


SANDBOX_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox")
