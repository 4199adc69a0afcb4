"""`auto`'s choice of transport: the event hub when one is configured and answers, else the fallback.

With AGENTSEAT_EVENTHUB_NAMESPACE and _NAME set, `auto` first probes the hub (one connection
and `get_eventhub_properties`, bounded: the doctor's probe, eventhub/doctor.py). If it answers,
the runtime runs exactly as `--mode eventhub`. If not, `auto` runs as it does without a hub
(webhooks while a public URL validates, polling for what they do not cover), says why and what
to do in `status` and the log, and probes again every `eventhub_probe_seconds` on the runtime's
clock; once the hub answers, the fallback stops and the hub takes over (the subscriptions move
to it: the manager replaces those naming another URL).

On the hub, it keeps probing on the same clock. A hub that stops answering (a laptop moved onto
a network that blocks 5671, an Azure outage) keeps what Graph delivers for later, but nothing
reaches the agent meanwhile; so while a probe finds it down, `outage` (polling) runs beside the
hub, and stops once a probe finds it back. The subscriptions stay on the hub throughout, and the
backlog the consumer then reads is stored once (the inbox's keys; the poll already stored most).

It owns the decision, its reason and its record: `status` (in-process, `describe()["transport"]`)
and `agentseat status` (the inbox's `transport` meta key) show it, and `doctor` words the same
decision from its own checks (`doctor_check`). The runtime (app.py) supplies what to run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..clock.scheduler import Now, Timer
from ..eventhub.settings import eventhub_name, fully_qualified_namespace

if TYPE_CHECKING:
    from ..clock import Clock
    from ..config import Settings
    from ..identity.doctor import Check
    from ..identity.tokens import TokenProvider
    from .inbox import Inbox

__all__ = ["META_KEY", "PROBE_TIMEOUT_SECONDS", "Choice", "HubProbe", "TransportChoice", "auto_checks",
           "doctor_check", "hub_configured", "transport_line"]

log = structlog.get_logger(__name__)

#: Inbox meta key: what `auto` chose and why (`agentseat status` reads it without a runtime).
META_KEY = "transport"
#: One probe waits at most this long: a hub that drops packets must not hold the fallback back long.
PROBE_TIMEOUT_SECONDS = 15.0
_NO_HUB = "no event hub configured (AGENTSEAT_EVENTHUB_NAMESPACE and AGENTSEAT_EVENTHUB_NAME unset)"

Run = Callable[[], Awaitable[None]]


def hub_configured(settings: Settings) -> bool:
    """A namespace and a hub are named (directly or by the SAS connection string)."""
    return bool(fully_qualified_namespace(settings) and eventhub_name(settings))


@dataclass
class Choice:
    """What `auto` runs, and why: `eventhub`, or the fallback (`webhook` or `poll`)."""

    transport: str
    reason: str
    fix: str = ""
    at: str = ""
    next_probe: str | None = None  # while falling back from a configured hub

    def line(self) -> str:
        text = f"auto chose {self.transport}" + ("" if self.transport == "eventhub" or not self.fix else
                                                  " (fallback)") + f": {self.reason}"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text + (f"; the hub is probed again at {self.next_probe}" if self.next_probe else "")


def transport_line(record: dict[str, Any] | None) -> str | None:
    """The `transport:` line of `agentseat status`, from the stored record."""
    if not record:
        return None
    return Choice(**{k: record.get(k) for k in ("transport", "reason", "fix", "at", "next_probe")}).line()


class HubProbe(Timer):
    """The clock's timer that says when to probe the hub again; the probe runs outside the clock."""

    name = "eventhub_probe"

    def __init__(self, every_seconds: float, now: Now) -> None:
        self.every, self._last = timedelta(seconds=every_seconds), now()
        self._due = anyio.Event()

    def next_at(self, now: datetime) -> datetime | None:
        return self._last + self.every

    async def fire(self, now: datetime) -> None:
        self._last = now
        self._due.set()  # never blocks the clock: a probe may take `PROBE_TIMEOUT_SECONDS`

    async def wait(self) -> None:
        await self._due.wait()
        self._due = anyio.Event()


async def probe(settings: Settings, tokens: TokenProvider, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> Check:
    """The doctor's "event hub" check (the Azure SDK is an extra: without it, a failed check saying so)."""
    from ..identity.doctor import Check

    try:
        from ..eventhub.doctor import probe_hub
    except ImportError as exc:
        return Check("event hub", "fail", f"the Azure Event Hubs SDK is not installed ({exc.name})",
                     "pip install 'agentseat[eventhub]', or unset AGENTSEAT_EVENTHUB_NAMESPACE")
    try:
        return await probe_hub(settings, tokens, timeout=timeout)
    except Exception as exc:  # a probe that cannot even start (the client refused its settings) must not stop auto
        return Check("event hub", "fail", f"cannot probe the hub: {type(exc).__name__}",
                     "run `agentseat doctor`; check the AGENTSEAT_EVENTHUB_* settings")


class TransportChoice:
    """Runs `auto`: the hub when it answers, else the fallback while probing on the clock."""

    def __init__(self, settings: Settings, tokens: TokenProvider, inbox: Inbox, clock: Clock, *,
                 fallback: str, note: Callable[[str], None]) -> None:
        self._settings, self._tokens, self._inbox, self._clock = settings, tokens, inbox, clock
        self.fallback = fallback  # `webhook` or `poll`: what `auto` runs without the hub
        self._note = note
        self.choice: Choice | None = None
        self.probes = 0

    async def run(self, *, fallback: Run, hub: Run, outage: Run | None = None) -> None:
        """Until cancelled: `hub` once the hub answers; `fallback` until then (or for good, with no hub);
        `outage` beside the hub while probes find it down."""
        if not hub_configured(self._settings):
            await self._record(Choice(self.fallback, _NO_HUB))
            await fallback()
            return
        failed = await self._probe()
        if failed is not None:
            timer = HubProbe(self._settings.eventhub_probe_seconds, self._clock.now)
            await self._record_fallback(timer, failed)
            self._clock.add(timer)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(fallback)
                    while failed is not None:
                        await timer.wait()
                        if (failed := await self._probe()) is not None:
                            await self._record_fallback(timer, failed)
                    tg.cancel_scope.cancel()  # the fallback stops (its tunnel, its poller) before the hub starts
            finally:
                self._clock.remove(timer)
            log.info("transport_switched", to="eventhub", fallback=self.fallback)
            self._note(f"the event hub answers now: switching from {self.fallback} to eventhub")
        if outage is None:
            await hub()
        else:
            await self._on_hub(hub, outage)

    async def _on_hub(self, hub: Run, outage: Run) -> None:
        """`hub` until cancelled; beside it, `outage` from a probe that finds the hub down to one that finds it back."""
        timer = HubProbe(self._settings.eventhub_probe_seconds, self._clock.now)
        self._clock.add(timer)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_returns, hub, tg.cancel_scope)
                covering: anyio.CancelScope | None = None
                while True:
                    await timer.wait()
                    failed = await self._probe(fallback="poll")
                    if failed is not None:
                        at = timer.next_at(self._clock.now())
                        choice = Choice("eventhub", f"the event hub does not answer ({failed.detail}); polling "
                                        "until it does", failed.fix,
                                        next_probe=None if at is None else at.isoformat(timespec="seconds"))
                        if covering is None:
                            self._note(f"the event hub stopped answering ({failed.detail}): polling until it "
                                       "answers again")
                            log.warning("transport_outage", reason=failed.detail, fix=failed.fix)
                            covering = await tg.start(self._cover, outage)
                        await self._record(choice)
                    elif covering is not None:
                        covering.cancel()
                        covering = None
                        self._note("the event hub answers again: polling stopped")
                        log.info("transport_outage_over")
        finally:
            self._clock.remove(timer)

    @staticmethod
    async def _until_returns(run: Run, scope: anyio.CancelScope) -> None:
        await run()
        scope.cancel()  # the hub's duty ended: so do the probes

    @staticmethod
    async def _cover(outage: Run, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await outage()

    async def _probe(self, *, fallback: str | None = None) -> Check | None:
        """Probe the hub and record the choice if it answers; else the failed check (logged, with the fix)."""
        self.probes += 1
        check = await probe(self._settings, self._tokens)
        if check.status == "ok":
            await self._record(Choice("eventhub", f"the event hub answered: {check.detail}"))
            return None
        # A warning for each new reason; the same reason again, every few minutes, is only noted.
        again = self.choice is not None and f"({check.detail})" in self.choice.reason
        (log.info if again else log.warning)("eventhub_unreachable", fallback=fallback or self.fallback,
                                             reason=check.detail, fix=check.fix,
                                             probe_again_seconds=self._settings.eventhub_probe_seconds)
        return check

    async def _record_fallback(self, timer: HubProbe, failed: Check) -> None:
        at = timer.next_at(self._clock.now())
        choice = Choice(self.fallback, f"the event hub does not answer ({failed.detail})", failed.fix,
                        next_probe=None if at is None else at.isoformat(timespec="seconds"))
        if self.choice is None or self.choice.reason != choice.reason:  # a note per new reason, not per probe
            self._note(choice.line())
        await self._record(choice)

    async def _record(self, choice: Choice) -> None:
        choice.at = datetime.now(UTC).isoformat(timespec="seconds")
        self.choice = choice
        await anyio.to_thread.run_sync(self._inbox.set_meta, META_KEY, json.dumps(asdict(choice)))

    def describe(self) -> dict[str, Any] | None:
        return None if self.choice is None else {**asdict(self.choice), "probes": self.probes}


def doctor_check(settings: Settings, hub_checks: list[Check], fallback: str) -> Check:
    """`doctor`'s word on `auto`: which transport it would choose from the hub checks just run, and why."""
    from ..identity.doctor import Check

    if not hub_configured(settings):
        return Check("transport", "ok", f"auto chooses {fallback}: {_NO_HUB}")
    hub = next((c for c in hub_checks if c.name == "event hub"), None)
    if hub is not None and hub.status == "ok":
        return Check("transport", "ok", "auto chooses eventhub: the event hub answered")
    failed = next((c for c in hub_checks if c.status in ("fail", "skip")), hub)
    why = f"{failed.name}: {failed.detail}" if failed is not None else "the event hub was not checked"
    return Check("transport", "warn", f"auto falls back to {fallback} while the event hub does not answer "
                 f"({why}); it probes the hub again every {settings.eventhub_probe_seconds:g} s",
                 (failed.fix if failed is not None and failed.fix else "fix the event hub checks above"))


async def auto_checks(settings: Settings, identity_ok: bool) -> list[Check]:
    """`doctor` in auto mode: the hub's checks when one is configured, then which transport auto chooses.
    A hub that fails is a warning here, not a failure: auto still runs, on its fallback."""
    from ..identity.doctor import Check

    fallback = "poll" if settings.tunnel == "none" else "webhook"
    if not hub_configured(settings):
        return [doctor_check(settings, [], fallback)]
    try:
        from ..eventhub.doctor import eventhub_checks
    except ImportError as exc:
        checks = [Check("event hub", "fail", f"the Azure Event Hubs SDK is not installed ({exc.name})",
                        "pip install 'agentseat[eventhub]', or unset AGENTSEAT_EVENTHUB_NAMESPACE")]
    else:
        checks = await eventhub_checks(settings, identity_ok=identity_ok)
    choice = doctor_check(settings, checks, fallback)
    return [*(replace(c, status="warn") if c.status == "fail" else c for c in checks), choice]
