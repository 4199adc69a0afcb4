"""`doctor --live`: the longest chat subscription this tenant's Graph accepts.

The subscription resource page says 4,320 minutes for chatMessage; older pages, the Teams
API overview and entrabot's tenants say 60. Graph refuses a longer request with an error
naming its maximum ("Subscription expiration can only be N minutes in the future."), so
the probe asks for more than any Graph subscription lasts and reads the answer. If Graph
accepts instead, the accepted lifetime is the finding, and the subscription is deleted at
once. Creating a subscription needs a URL Graph can reach: the running runtime's, the
loopback stand-in (sandbox) or AGENTSEAT_PUBLIC_URL, where this module answers the
validation handshake itself when the runtime is not there to do it. Without one the probe
is skipped. The probe's clientState is fresh and random, and is never shown.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from aiohttp import web

from ..config import Settings
from ..errors import AgentSeatError, GraphError
from ..graph.client import GraphClient
from ..subscriptions.known import new_client_state
from ..subscriptions.specs import SubscriptionSpec
from ..tunnel.static import validate_public_url
from .doctor_probes import Finding
from .keys import KeyStore

__all__ = ["PROBE_MINUTES", "PublicUrl", "chat_subscription_lifetime", "find_public_url"]

log = structlog.get_logger(__name__)

#: More than any Graph subscription may last (Outlook without resource data: 10,080 minutes,
#: the longest in the subscription resource's lifetime table), so a tenant that accepts it
#: has no limit we could hit.
PROBE_MINUTES = 10_080
_MAXIMUM = re.compile(r"(?:Subscription expiration )?can only be (\d+) minutes in the future\.?", re.I)
_MAX_TOKEN_CHARS = 1024  # Graph's are ~130 characters; the runtime's webhook echoes at most this many
_NAME = "chat subscription lifetime"
_FACT = "chat_subscription_max_minutes"


@dataclass(frozen=True)
class PublicUrl:
    """Where Graph can reach a webhook; `serve` is the (host, port) to answer on, if ours to answer."""

    url: str
    source: str
    serve: tuple[str, int] | None


def _runtime_running(state_dir: Path) -> bool:
    """Is a runtime holding the owner lock? Tested with a shared lock, so nothing is written."""
    path = state_dir / "runtime.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we got
    return False


def _runtime_url(settings: Settings) -> str:
    """The base URL the running runtime's subscriptions point at ("" if none recorded)."""
    # Imported here: the runtime's store owns that file, and identity/ must not need runtime/ to load.
    from ..runtime.inbox import Inbox

    path = settings.state_dir / "inbox.db"
    if not path.exists() or not _runtime_running(settings.state_dir):
        return ""
    inbox = Inbox(path)
    try:
        raw = inbox.get_meta("subscriptions")
    finally:
        inbox.close()
    for state in (json.loads(raw) if raw else {}).values():
        url = str(state.get("url") or "")
        if state.get("state") == "active" and url.endswith("/notifications"):
            return url[: -len("/notifications")]
    return ""


def find_public_url(settings: Settings) -> PublicUrl | str:
    """A URL Graph can validate, or the reason there is none."""
    running = _runtime_url(settings)
    if running:
        return PublicUrl(running, "the running runtime's", None)
    if settings.tunnel == "loopback":
        host = settings.webhook_host
        return PublicUrl("", "the loopback stand-in for a tunnel", (host, settings.webhook_port))
    if settings.public_url:
        url = validate_public_url(settings.public_url).rstrip("/")
        serve = (settings.webhook_host, settings.webhook_port) if settings.webhook_port else None
        return PublicUrl(url, "AGENTSEAT_PUBLIC_URL", serve)
    if settings.tunnel == "ngrok":
        return ("no public URL: the ngrok tunnel runs only with the runtime; start it in webhook mode "
                "(`agentseat watch --mode webhook`) and run doctor again, or set AGENTSEAT_PUBLIC_URL")
    return f"no public URL: the tunnel is {settings.tunnel!r}; set AGENTSEAT_PUBLIC_URL to one that reaches this machine"


async def _answer(request: web.Request) -> web.Response:
    """Graph's handshake: echo the decoded validationToken as text/plain within 10 s
    (change-notifications-delivery-webhooks); anything else is acknowledged and dropped."""
    token = request.query.get("validationToken")  # form-decoded, `+` as space, as Graph sends it
    if token is None:
        return web.Response(status=202)
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isprintable():
        return web.Response(status=400)
    return web.Response(text=token, content_type="text/plain")


@asynccontextmanager
async def _endpoint(host: str, port: int) -> AsyncIterator[int | None]:
    """Answer handshakes on (host, port) while the probe runs; None if the port is taken
    (the runtime is serving it and answers the handshake itself)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        bound: int | None = None
        try:
            await web.TCPSite(runner, host, port).start()
            bound = int(runner.addresses[0][1]) if runner.addresses else port
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        yield bound
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def _certificate(settings: Settings) -> tuple[str, str]:
    cert = KeyStore(settings).load(settings.cert_thumbprint or None)
    return cert.der_b64, cert.sha1_thumbprint


async def chat_subscription_lifetime(settings: Settings, graph: GraphClient) -> Finding:
    """Create a chat subscription for longer than Graph allows; the refusal names the maximum."""
    where = find_public_url(settings)
    if isinstance(where, str):
        return Finding(_NAME, "skip", f"skipped: {where}")
    certificate_b64, certificate_id = await anyio.to_thread.run_sync(_certificate, settings)
    if where.serve is None:
        return await _probe(settings, graph, where.url, where.source, certificate_b64, certificate_id)
    async with _endpoint(*where.serve) as port:
        url = where.url or f"http://{where.serve[0]}:{port or where.serve[1]}"
        return await _probe(settings, graph, url, where.source, certificate_b64, certificate_id)


async def _probe(settings: Settings, graph: GraphClient, url: str, source: str, certificate_b64: str,
                 certificate_id: str) -> Finding:
    # The same resource and payload as the runtime's chat subscription (subscriptions/specs.py),
    # but changeType "deleted": never a duplicate (409) of the runtime's own "created" one.
    spec = SubscriptionSpec(kind="teams", resource=f"/users/{settings.agent_user_id}/chats/getAllMessages",
                            change_type="deleted", minutes=PROBE_MINUTES)
    asked = dt.datetime.now(dt.timezone.utc)
    body = spec.body(notification_url=f"{url}/notifications", lifecycle_url=f"{url}/lifecycle",
                     client_state=new_client_state(), certificate_b64=certificate_b64,
                     certificate_id=certificate_id, now=asked)
    extra = {"requested_minutes": PROBE_MINUTES, "public_url_source": source}
    try:
        created = await graph.post("/subscriptions", body)
    except GraphError as exc:
        found = _MAXIMUM.search(exc.message)
        if found is None:
            return Finding(_NAME, "warn", f"unknown: Graph refused the probe subscription ({exc.status}"
                                          f"{f' {exc.code}' if exc.code else ''}) without naming a maximum",
                           extra=extra | {"http_status": exc.status, "code": exc.code})
        limit = int(found.group(1))
        return Finding(_NAME, "ok" if limit >= 4320 else "warn",
                       f"at most {limit} minutes (Graph refused {PROBE_MINUTES}: \"{found.group(0)}\")",
                       fact=_FACT, value=limit, extra=extra)
    created = created if isinstance(created, dict) else {}
    note = await _delete(graph, str(created.get("id") or ""))
    try:
        expires = dt.datetime.fromisoformat(str(created.get("expirationDateTime")).replace("Z", "+00:00"))
    except ValueError:
        return Finding(_NAME, "warn", f"unknown: Graph accepted a {PROBE_MINUTES}-minute subscription without a "
                                      f"readable expirationDateTime ({note})", extra=extra | {"accepted": True})
    accepted = round((expires - asked).total_seconds() / 60)
    return Finding(_NAME, "ok", f"at least {accepted} minutes: Graph accepted a {PROBE_MINUTES}-minute "
                                f"subscription ({note})", fact=_FACT, value=accepted,
                   extra=extra | {"accepted": True})


async def _delete(graph: GraphClient, sub_id: str) -> str:
    """Delete the probe's subscription, even when cancelled; says how it went."""
    if not sub_id:
        return "Graph returned no id to delete"
    with anyio.CancelScope(shield=True):
        try:
            await graph.delete(f"/subscriptions/{sub_id}")
        except AgentSeatError as exc:
            log.warning("doctor_probe_subscription_left", subscription=sub_id, error=exc.message)
            return f"deleting it failed: {exc.message}; it expires by itself"
    return "deleted again"
