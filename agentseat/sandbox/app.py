"""The sandbox server: one aiohttp app on loopback HTTPS with Entra, Graph and control routes.

`Sandbox` is the shared state (state.py) plus the server around it: it assembles
the route modules and owns the delivery engine's task. Use it as an async context
manager (tests, `agentseat demo`) or run it in the foreground (`agentseat sandbox`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import structlog
from aiohttp import web

from .control import behaviour_routes, chat_routes, file_routes, message_actions
from .control import team_routes
from .control import routes as control_routes
from .entra import endpoints as entra_endpoints
from .envfile import write_sandbox_env
from .eventhubs import routes as eventhubs_routes
from .eventhubs import server as eventhubs_server
from .eventhubs.emulator import EventHubs
from .graph import chat_message_actions, chat_messages, chats, hosted_contents, mail, mail_delta
from .graph.drive import routes as drive
from .graph.auth import graph_middleware
from .graph import teams as graph_teams
from .graph.directory import users as directory
from .notifications import subscriptions
from .notifications.delivery import DeliveryEngine
from .state import SANDBOX_KEY, SandboxOptions, SandboxState

__all__ = ["Sandbox", "SandboxOptions"]

log = structlog.get_logger(__name__)


class Sandbox(SandboxState):
    """A local Microsoft 365 tenant: Entra token endpoint, a Graph subset,
    change-notification delivery and the `/_sandbox/` control API."""

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        super().__init__(state_dir, options)
        self.delivery: DeliveryEngine = DeliveryEngine(self)
        self.eventhubs: EventHubs = EventHubs(self)  # Event Hubs emulator (eventhubs/); its listener runs below
        self._runner: web.AppRunner | None = None

    async def _flusher(self) -> None:
        while True:
            await anyio.sleep(0.5)
            self.flush()

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[graph_middleware], client_max_size=8 * 1024 * 1024)
        app[SANDBOX_KEY] = self
        # Order matters: aiohttp matches in registration order, and the more specific
        # getAllMessages and /messages/delta routes must come before `{chat_id}`/`{message_id}`.
        modules = (entra_endpoints, directory, chat_messages, chat_message_actions, chats, mail_delta, mail,
                   subscriptions, control_routes, message_actions, behaviour_routes, chat_routes,
                   graph_teams, team_routes, hosted_contents, drive, file_routes, eventhubs_routes)
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
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(eventhubs_server.run, self.eventhubs, self.options.host)
                write_sandbox_env(self)  # after the Event Hubs port is known
                log.info("sandbox_started", url=self.url, env=str(self.env_path))
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
