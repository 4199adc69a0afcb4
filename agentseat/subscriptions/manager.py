"""A desired-state reconciler for the agent's Graph subscriptions.

It creates the subscriptions in `specs.desired_specs`, adopts live ones it made
before (Graph allows one per app per resource: a duplicate is a 409), renews
them well before expiry, answers lifecycle notifications, and recreates them
when Graph removes them. Every gap (downtime, `missed`, a recreation, a URL
move) is handed to `on_resync` so the poller reads what the gap hid.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..config import Settings
from ..errors import GraphError, NotFoundError
from ..graph.times import parse_graph_time
from ..runtime.inbox import Inbox
from ..runtime.pipeline import KnownSubscription
from .specs import SubscriptionSpec, desired_specs, expiry

log = structlog.get_logger(__name__)

_META_KEY = "subscriptions"
Resync = Callable[[str, str], Awaitable[None]]  # (kind, reason)


@dataclass
class SubscriptionState:
    kind: str
    id: str = ""
    expires: float = 0.0  # epoch seconds
    url: str = ""
    state: str = "pending"  # pending | active | refused
    error: str = ""


def load_client_state(state_dir: Path) -> str:
    """The webhook's shared secret: random, per install, kept 0600 beside the inbox."""
    path = state_dir / "client_state"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(48)  # ≤ 128 characters, the documented clientState limit
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


class SubscriptionManager:
    """Keeps the agent's subscriptions alive for one public URL at a time."""

    def __init__(self, settings: Settings, graph: Any, inbox: Inbox, *, certificate_b64: str, certificate_id: str,
                 client_state: str, on_resync: Resync, specs: list[SubscriptionSpec] | None = None) -> None:
        self._settings = settings
        self._graph = graph
        self._inbox = inbox
        self._cert = certificate_b64
        self._cert_id = certificate_id
        self._client_state = client_state
        self._on_resync = on_resync
        self.specs = specs or desired_specs(settings)
        self.states: dict[str, SubscriptionState] = {s.kind: SubscriptionState(s.kind) for s in self.specs}
        self.known: dict[str, KnownSubscription] = {}  # live view the webhook pipeline checks
        self.url = ""
        self._lock = anyio.Lock()
        self._load()

    # --- persistence ------------------------------------------------------------------
    def _load(self) -> None:
        raw = self._inbox.get_meta(_META_KEY)
        if not raw:
            return
        for kind, data in json.loads(raw).items():
            if kind in self.states:
                self.states[kind] = SubscriptionState(**data)
        self._refresh_known()

    def _save(self) -> None:
        self._inbox.set_meta(_META_KEY, json.dumps({k: asdict(v) for k, v in self.states.items()}))
        self._refresh_known()

    def _refresh_known(self) -> None:
        # Old ids stay known briefly so in-flight notifications of a replaced subscription still verify.
        for state in self.states.values():
            if state.id:
                self.known[state.id] = KnownSubscription(state.id, state.kind, self._client_state)  # type: ignore[arg-type]

    # --- reconciliation ----------------------------------------------------------------
    def active_kinds(self) -> set[str]:
        return {k for k, s in self.states.items() if s.state == "active"}

    async def sync(self, public_url: str) -> set[str]:
        """Make every desired subscription point at `public_url`; returns the active kinds."""
        async with self._lock:
            self.url = public_url.rstrip("/")
            try:
                live = [s async for page in self._graph.pages("/subscriptions") for s in page]
            except GraphError as exc:
                log.warning("subscriptions_list_failed", status=exc.status, code=exc.code)
                live = []
            for spec in self.specs:
                await self._reconcile(spec, [s for s in live if spec.matches(str(s.get("resource", "")))])
            self._save()
            return self.active_kinds()
        # The caller resyncs every kind once after `sync`: that one read covers the
        # downtime before it and any recreation during it.

    async def _reconcile(self, spec: SubscriptionSpec, existing: list[dict[str, Any]]) -> None:
        state = self.states[spec.kind]
        want_url = f"{self.url}/notifications"
        keep = next((s for s in existing if s.get("notificationUrl") == want_url
                     and s.get("lifecycleNotificationUrl") == f"{self.url}/lifecycle"), None)
        for stale in existing:
            if stale is not keep:
                # A different URL: lifecycleNotificationUrl cannot be changed by PATCH
                # (subscription-update), so the subscription is replaced.
                await self._delete(str(stale["id"]))
        if keep is not None:
            adopted = state.id != keep["id"]
            state.id, state.url, state.state, state.error = str(keep["id"]), want_url, "active", ""
            state.expires = parse_graph_time(str(keep["expirationDateTime"]))
            if adopted:
                log.info("subscription_adopted", kind=spec.kind, subscription=state.id)
            await self._renew_if_due(spec)
            return
        await self._create(spec, reason="moved" if existing else "created", resync=False)

    async def _create(self, spec: SubscriptionSpec, *, reason: str, resync: bool = True) -> None:
        state = self.states[spec.kind]
        if not self.url:
            # No public URL yet: a lifecycle event can arrive between the webhook's start and
            # the first `sync` (Graph redelivers what it queued while we were down). Creating
            # now would point Graph at "/notifications" and be refused; `sync` creates it.
            state.id, state.state, state.error = "", "pending", ""
            self._save()
            log.info("subscription_deferred", kind=spec.kind, reason=reason)
            return
        body = spec.body(notification_url=f"{self.url}/notifications", lifecycle_url=f"{self.url}/lifecycle",
                         client_state=self._client_state, certificate_b64=self._cert, certificate_id=self._cert_id)
        try:
            created = await self._graph.post("/subscriptions", body)
        except GraphError as exc:
            if exc.status == 409:
                log.warning("subscription_conflict", kind=spec.kind)
            state.state, state.error = "refused", _explain(exc)
            log.warning("subscription_refused", kind=spec.kind, status=exc.status, code=exc.code, why=state.error)
            self._save()
            return
        state.id, state.url, state.state, state.error = str(created["id"]), f"{self.url}/notifications", "active", ""
        state.expires = parse_graph_time(str(created["expirationDateTime"]))
        self._save()
        log.info("subscription_created", kind=spec.kind, subscription=state.id, reason=reason)
        if resync:
            await self._resync(spec.kind, reason)

    async def _delete(self, subscription_id: str) -> None:
        try:
            await self._graph.delete(f"/subscriptions/{subscription_id}")
        except NotFoundError:
            pass
        except GraphError as exc:
            log.warning("subscription_delete_failed", subscription=subscription_id, status=exc.status)

    async def _resync(self, kind: str, reason: str) -> None:
        await self._on_resync(kind, reason)

    # --- renewal and lifecycle ----------------------------------------------------------
    def _spec(self, kind: str) -> SubscriptionSpec:
        return next(s for s in self.specs if s.kind == kind)

    async def _renew_if_due(self, spec: SubscriptionSpec) -> None:
        state = self.states[spec.kind]
        left = state.expires - datetime.now(UTC).timestamp()
        if state.state == "active" and left < spec.minutes * 60 * self._settings.renew_fraction:
            await self.renew(spec.kind, reason="due")

    async def renew(self, kind: str, *, reason: str) -> None:
        """One PATCH of expirationDateTime: renews and reauthorizes in a single call
        (never both a reauthorize and a PATCH within 10 minutes, lifecycle docs)."""
        spec, state = self._spec(kind), self.states[kind]
        if not state.id:
            return await self._create(spec, reason=reason)
        try:
            updated = await self._graph.patch(f"/subscriptions/{state.id}", {"expirationDateTime": expiry(spec.minutes)})
        except NotFoundError:
            log.info("subscription_gone", kind=kind, subscription=state.id)
            state.id = ""
            return await self._create(spec, reason="recreated")
        except GraphError as exc:
            log.warning("subscription_renew_failed", kind=kind, status=exc.status, code=exc.code)
            return None
        state.expires = parse_graph_time(str(updated["expirationDateTime"]))
        self._save()
        log.info("subscription_renewed", kind=kind, subscription=state.id, reason=reason)
        return None

    async def handle_lifecycle(self, known: KnownSubscription, event: str) -> None:
        """React to a verified lifecycle notification (change-notifications-lifecycle-events)."""
        async with self._lock:
            state = self.states.get(known.kind)
            if state is None or state.id != known.id:
                log.info("lifecycle_for_old_subscription", kind=known.kind, lifecycle_event=event)
                return
            log.info("lifecycle_event", kind=known.kind, lifecycle_event=event, subscription=known.id)
            if event == "reauthorizationRequired":
                await self.renew(known.kind, reason="reauthorize")
            elif event == "subscriptionRemoved":
                state.id = ""
                await self._create(self._spec(known.kind), reason="removed")
            elif event == "missed":
                await self._resync(known.kind, "missed")

    async def maintain(self) -> None:
        """Renew whatever is due, forever; the runtime cancels it when the URL goes away."""
        while True:
            async with self._lock:
                for spec in self.specs:
                    await self._renew_if_due(spec)
            await anyio.sleep(self._check_interval())

    def _check_interval(self) -> float:
        now = datetime.now(UTC).timestamp()
        waits = [max(5.0, (s.expires - now) / 4) for s in self.states.values() if s.state == "active"]
        return min([300.0, *waits])

    async def drop_all(self) -> None:
        """Delete our subscriptions (used by teardown and when leaving webhook mode for good)."""
        async with self._lock:
            for state in self.states.values():
                if state.id:
                    await self._delete(state.id)
                state.id, state.state = "", "pending"
            self._save()

    def status(self) -> dict[str, Any]:
        return {k: {"state": s.state, "id": s.id, "expires": s.expires, "error": s.error} for k, s in self.states.items()}


def _explain(exc: GraphError) -> str:
    """In words, why Graph refused a subscription, for `status` and `doctor`."""
    if exc.status == 403:
        return f"Graph refused the subscription (403 {exc.code}): the agent lacks the permission or a quota is full"
    if exc.status == 400 and exc.code in ("ValidationError", "InvalidRequest"):
        return "Graph could not validate the webhook URL: the tunnel does not reach this runtime"
    if exc.status == 409:
        return "a subscription for this resource already exists for another URL"
    return f"Graph refused the subscription ({exc.status} {exc.code}): {exc.message}"
