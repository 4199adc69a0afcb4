"""Is the Agent User's mailbox there yet, and its Teams presence?

Creating an Agent User provisions neither; a licence starts both, and it can take
hours (Entra, "agent users"). Until then Graph answers mail routes with 404
MailboxNotEnabledForRESTAPI and Teams routes with 403 "Failed to get license
information for the user" (refusals.py has the shapes and their sources).

Each part is probed on its own and, while it is not ready, probed again on a
backoff, so Teams works while the mailbox is still on its way. The tenant facts
`mailbox` and `teams` say `ready` or `not_ready`; a warning (`readiness.mailbox`,
`readiness.teams`) says what Graph answered and when the next look is, and is
cleared once the part is ready. When a part becomes ready, `on_ready` is told
(the runtime then asks for the subscription again and reads what it missed).

A runtime about to subscribe holds the first probes (`hold`): Graph creating a
subscription on a part answers the same question (`confirm`), so a startup asks
Graph nothing more. That matters for Teams: its probe lists the chats, and the
startup read that follows the subscriptions would otherwise wait out the one
request per second per user GET /me/chats allows. A held probe runs as soon as
anyone needs its answer (`usable`), a refusal says the part is not there, or
HOLD_SECONDS pass.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from ..errors import AgentSeatError, GraphError
from .refusals import Part, not_provisioned

log = structlog.get_logger(__name__)

#: The subscription kind each part carries.
KINDS: dict[Part, str] = {"mailbox": "mail", "teams": "teams"}
#: One cheap read per part: a part that answers it is provisioned.
PROBES: dict[Part, tuple[str, dict[str, str]]] = {
    "mailbox": ("/me/mailFolders/inbox/messages", {"$top": "1", "$select": "id"}),
    "teams": ("/me/chats", {"$top": "1"}),
}
#: A part that is not ready is looked at again after 5 s, doubling up to every 5 minutes
#: (provisioning takes minutes to hours); an unclear answer (a 5xx) is retried the same way.
FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS = 5.0, 300.0
#: GET /me/chats allows one request per second per user (throttling-limits, Teams): the
#: runtime's own chat reads start no sooner than this after the Teams probe.
CHAT_LIST_GAP_SECONDS = 1.0
#: A held first probe runs after this long at the latest (the subscriptions never came).
HOLD_SECONDS = 30.0
_LABELS: dict[Part, str] = {"mailbox": "mailbox", "teams": "Teams presence"}


class Readiness:
    """Tracks both parts; `run` waits for each until it is ready, and again if it stops being so."""

    def __init__(self, graph: Any, facts: Any, *, on_ready: Callable[[str], None] | None = None,
                 first_retry: float | None = None, max_retry: float | None = None, hold: bool = False) -> None:
        self._graph = graph
        self._facts = facts
        self.on_ready = on_ready  # called with the subscription kind ("mail" | "teams")
        self._first = FIRST_RETRY_SECONDS if first_retry is None else first_retry
        self._most = MAX_RETRY_SECONDS if max_retry is None else max_retry
        self.state: dict[Part, str] = {"mailbox": "unknown", "teams": "unknown"}
        self._wake: dict[Part, anyio.Event] = {part: anyio.Event() for part in KINDS}
        self._answered: dict[Part, anyio.Event] = {part: anyio.Event() for part in KINDS}
        self._probed_at: dict[Part, float] = {}  # anyio time each part's last probe ended
        #: Set when a part's first probe may run; set from the start unless `hold`.
        self._go: dict[Part, anyio.Event] = {part: anyio.Event() for part in KINDS}
        self._confirmed: set[Part] = set()  # ready by Graph's answer elsewhere: the next probe is not needed
        if not hold:
            for event in self._go.values():
                event.set()

    def ready(self, part: Part) -> bool:
        return self.state[part] == "ready"

    async def usable(self, kind: str, *, timeout: float = 30.0) -> bool:
        """After the first probe of `kind`'s part: False if it is not provisioned yet (reading it
        now would only fail), else True; True too if no answer came within `timeout`."""
        part = next(p for p, k in KINDS.items() if k == kind)
        self._go[part].set()  # someone needs the answer now: a held probe runs
        with anyio.move_on_after(timeout):
            await self._answered[part].wait()
        if part == "teams" and part in self._probed_at:
            await anyio.sleep(max(0.0, self._probed_at[part] + CHAT_LIST_GAP_SECONDS - anyio.current_time()))
        return self.state[part] != "not_ready"

    def release(self) -> None:
        """Let held probes run now: the runtime polls instead of subscribing (no tunnel yet)."""
        for event in self._go.values():
            event.set()

    def not_ready(self, part: Part, answer: str) -> None:
        """Someone else (a subscription refusal) saw Graph say the part is not provisioned:
        a part thought ready is probed again; one already waited for keeps its schedule."""
        self._go[part].set()
        self._confirmed.discard(part)
        if self.state[part] == "not_ready":
            return
        self._mark(part, False, answer, None)
        self._wake[part].set()

    def confirm(self, kind: str) -> None:
        """Graph holds a subscription of `kind` ("mail" | "teams"; it accepts one only on a part
        that is provisioned): the part is ready, and a held or waiting probe need not ask."""
        part = next((p for p, k in KINDS.items() if k == kind), None)
        if part is None or self.state[part] == "ready":
            return
        self._confirmed.add(part)
        self._mark(part, True, "", None)
        self._answered[part].set()
        self._go[part].set()

    async def probe(self, part: Part) -> tuple[bool | None, str]:
        """(True, "") when the part answers, (False, what Graph said) when it is not provisioned,
        (None, why) when the answer says neither (throttled, a 5xx, a network error)."""
        path, params = PROBES[part]
        try:
            await self._graph.get(path, **params)
        except GraphError as exc:
            if not_provisioned(exc) == part:
                return False, f"{exc.status} {exc.code}"
            return None, f"{exc.status} {exc.code}"
        except AgentSeatError as exc:
            return None, exc.message
        finally:
            self._probed_at[part] = anyio.current_time()
        return True, ""

    async def wait(self, part: Part) -> None:
        """Probe `part` until it answers, then watch for news that it stopped; until cancelled."""
        with anyio.move_on_after(HOLD_SECONDS):
            await self._go[part].wait()
        attempt = 0
        while True:
            if part in self._confirmed:
                self._confirmed.discard(part)
                ok, answer = True, ""
            else:
                ok, answer = await self.probe(part)
            attempt += 1
            delay = min(self._most, self._first * 2 ** min(attempt - 1, 20))
            if ok:
                self._mark(part, True, "", None)
                self._answered[part].set()
                self._wake[part] = wake = anyio.Event()
                await wake.wait()  # `not_ready` from a refusal: look again, after a while (never a
                await anyio.sleep(delay)  # tight loop if the probe and the refusal disagree)
                continue
            if ok is False:
                self._mark(part, False, answer, datetime.now(UTC).timestamp() + delay)
            else:
                log.info("readiness_unclear", part=part, answer=answer, retry_in=delay)
            self._answered[part].set()
            await anyio.sleep(delay)

    async def run(self) -> None:
        """Watch both parts side by side, until cancelled."""
        async with anyio.create_task_group() as tg:
            for part in KINDS:
                tg.start_soon(self.wait, part)

    def _mark(self, part: Part, ready: bool, answer: str, retry_at: float | None) -> None:
        was = self.state[part]
        self.state[part] = "ready" if ready else "not_ready"
        self._facts.record(part, self.state[part])
        if ready:
            self._facts.warn(f"readiness.{part}", None)
            if was == "not_ready":
                log.info("agent_user_part_ready", part=part)
                if self.on_ready is not None:
                    self.on_ready(KINDS[part])
            return
        when = f"; retrying at {datetime.fromtimestamp(retry_at, UTC):%H:%M:%S} UTC" if retry_at else ""
        self._facts.warn(f"readiness.{part}", f"{_LABELS[part]} not ready yet (Graph answered {answer}; licensing "
                                              f"starts provisioning and it can take hours){when}")
