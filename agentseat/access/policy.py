"""`AccessPolicy`: the intake's gate, deciding who may reach the agent (issue 9, point 6).

`AGENTSEAT_INBOUND_POLICY` says who gets through:

- `sponsors`: sponsors only (and a bot's `--allow`);
- `allowlist`: sponsors, `AGENTSEAT_ALLOW` and everyone a sponsor approved;
- `pairing` (default): as `allowlist`, and an unknown sender in a one-on-one Teams chat gets one
  short reply with a code that a sponsor approves (`agentseat access approve CODE`, or a DM
  `approve CODE` confirmed through Graph);
- `tenant`: as `allowlist`, and everyone else in the agent's tenant is `open` (stored untrusted).

Whoever may not get through is *held* in `access.db`, never pushed or given to a handler, and
released into the inbox, in arrival order, once they are allowed. Senders from other tenants
are offered no code unless `AGENTSEAT_ALLOW_EXTERNAL=1`. The policy owns no transport: it is
given the intake (to release) and the Graph client (chat types, code replies, name lookups).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import anyio
import structlog

from ..errors import AgentSeatError
from ..runtime.events import Event
from ..runtime.intake import Decision
from .store import AccessError, AccessStore, PendingCode, Person, sender_key

if TYPE_CHECKING:
    from ..config import Settings

log = structlog.get_logger(__name__)

#: How often the runtime looks at `access.db` for approvals made by `agentseat access`.
CHECK_SECONDS = 0.5
APPROVE = re.compile(r"^\s*approve\s+([A-Za-z0-9]{6})\s*[.!]?\s*$", re.I)
CODE_REPLY = ("Hi{name}, I only take messages from people my sponsor has approved. To ask for access, "
              "give them this code: {code} (valid for 1 hour). Your messages are kept until then.")


class Releaser(Protocol):
    async def release(self, events: list[Event]) -> list[Event]: ...


class GraphLike(Protocol):
    async def get(self, path: str, **params: Any) -> Any: ...
    async def post(self, path: str, body: Any) -> Any: ...


@dataclass
class AccessCounters:
    held: int = 0
    codes_sent: int = 0
    released: int = 0
    approved_in_teams: int = 0


def _lower(names: Iterable[str]) -> set[str]:
    return {n.strip().lower() for n in names if n and n.strip()}


class AccessPolicy:
    """Implements the intake's `Gate` (`decide`, `hold`) over an `AccessStore`."""

    def __init__(self, settings: Settings, store: AccessStore | None = None) -> None:
        self.mode = settings.inbound_policy
        self.allow_external = settings.allow_external
        self.store = store or AccessStore(settings.state_dir / "access.db")
        self.counters = AccessCounters()
        self._configured = _lower(settings.allow)  # AGENTSEAT_ALLOW: ids and UPNs
        self._extra: set[str] = set()  # a bot's --allow ("*" is everyone)
        self._aliases: dict[str, set[str]] = {}  # a UPN above -> its object id and mail address
        self._approved: set[str] = set()  # every name of the people in `access.db`
        self._version: int | None = None
        self._intake: Releaser | None = None
        self._graph: GraphLike | None = None
        self._chat_types: dict[str, str] = {}
        #: The audit log's append (kind, action, **facts), set by the runtime: holds and approvals.
        self.audit: Callable[..., object] | None = None
        self._release_lock = anyio.Lock()
        self.refresh()

    # --- wiring ----------------------------------------------------------------------------------
    def attach(self, intake: Releaser, graph: GraphLike,
               intercept: Callable[[Callable[[Event], Awaitable[bool]]], None] | None = None) -> None:
        """Give the policy the intake it releases into and the agent's Graph client; register the
        sponsor's `approve CODE` interceptor when `intercept` (the intake's) is given."""
        self._intake, self._graph = intake, graph
        if intercept is not None:
            intercept(self.on_confirmed)

    def extend(self, names: Iterable[str]) -> None:
        """More people who may reach the agent for this process only (`agentseat bot --allow`)."""
        self._extra |= _lower(names)

    def close(self) -> None:
        self.store.close()

    def snapshot(self) -> dict[str, Any]:
        """What `decide` reads, for an intake process's copy of the gate (agentseat/intake_workers)."""
        return {"extra": sorted(self._extra), "aliases": {k: sorted(v) for k, v in sorted(self._aliases.items())},
                "approved": sorted(self._approved)}

    def adopt(self, snapshot: dict[str, Any]) -> None:
        """Decide as the policy that took `snapshot` does (its `--allow`, resolved names and approvals)."""
        self._extra = set(snapshot["extra"])
        self._aliases = {k: set(v) for k, v in snapshot["aliases"].items()}
        self._approved = set(snapshot["approved"])

    # --- the Gate ---------------------------------------------------------------------------------
    def allows(self, event: Event) -> bool:
        """A sponsor, or someone allowed by the settings, a sponsor's approval or `--allow`."""
        if event.trust == "sponsor" or "*" in self._extra:
            return True
        names = _lower((event.sender_id, event.sender_upn))
        listed = self._with_aliases(self._extra)
        if self.mode != "sponsors":
            listed |= self._with_aliases(self._configured) | self._approved
        return bool(names & listed)

    def _with_aliases(self, names: set[str]) -> set[str]:
        return names.union(*(self._aliases.get(n, set()) for n in names))

    def decide(self, event: Event) -> Decision:
        if self.allows(event):
            return "allow"
        if self.mode == "tenant" and event.trust == "colleague":
            return "open"
        return "hold"

    async def hold(self, event: Event) -> None:
        """Keep `event` out of the inbox; under `pairing`, offer its sender a code if they may pair."""
        await self.resolve_names()  # at startup, an allowed UPN may not be known by id yet
        stored = await anyio.to_thread.run_sync(self.store.hold, event)
        if not stored:
            log.info("access_hold_skipped", kind=event.kind, sender=sender_key(event))
            return
        self.counters.held += 1
        log.info("access_held", kind=event.kind, chat=event.chat_id, sender=sender_key(event), trust=event.trust)
        if self.audit is not None:  # a gate's refusal: the sender may not reach the agent (yet)
            self.audit("refusal", "access_held", event_kind=event.kind, chat_id=event.chat_id, sender=sender_key(event))
        # Approved between `decide` and now, perhaps by `agentseat access` a moment ago (the timer
        # refreshes before it releases, and a just-approved sender must not get a second code).
        await anyio.to_thread.run_sync(self.refresh_if_changed)
        if self.decide(event) != "hold":
            await self.release_allowed()
            return
        await self._offer_code(event)

    async def _offer_code(self, event: Event) -> None:
        if self.mode != "pairing" or event.kind != "teams" or event.chat_id is None or self._graph is None:
            return
        if event.trust == "external" and not self.allow_external:
            log.info("access_no_code", reason="external", sender=sender_key(event))
            return
        if not await anyio.to_thread.run_sync(self.store.may_offer, event):
            log.info("access_no_code", reason="pending_or_full", sender=sender_key(event))
            return  # a flood from one sender costs no Graph call per message
        if await self.chat_type(event.chat_id) != "oneOnOne":
            log.info("access_no_code", reason="not_one_on_one", chat=event.chat_id)
            return
        upn, mail = await self._addresses(event.sender_id)
        pending = await anyio.to_thread.run_sync(lambda: self.store.offer_code(event, upn=upn, mail=mail))
        if pending is None:
            log.info("access_no_code", reason="pending_or_full", sender=sender_key(event))
            return
        first = event.sender_name.split()[0] if event.sender_name.strip() else ""
        try:
            await self._say(event.chat_id, CODE_REPLY.format(name=f" {first}" if first else "", code=pending.code))
        except AgentSeatError as exc:
            # A code nobody saw must not block the sender's next try for an hour.
            await anyio.to_thread.run_sync(self.store.withdraw_code, pending.code)
            log.warning("access_code_reply_failed", chat=event.chat_id, error=exc.message)
            return
        self.counters.codes_sent += 1
        log.info("access_code_sent", chat=event.chat_id, sender=pending.sender_key)

    # --- approvals --------------------------------------------------------------------------------
    async def approve(self, code: str, *, via: str) -> tuple[Person, int]:
        """Approve a pending code; returns the person and how many held messages were released."""
        person = await anyio.to_thread.run_sync(
            lambda: approve_code(self.store, code, allow_external=self.allow_external, via=via))
        self.refresh()
        if self.audit is not None:
            self.audit("action", "access_approve", via=via, person=person.upn or person.key)
        return person, await self.release_allowed()

    async def on_confirmed(self, event: Event) -> bool:
        """The intake's interceptor: a sponsor's own DM `approve CODE`, confirmed through Graph, is
        consumed. Nothing else is touched (the access skill never acts on channel messages)."""
        if event.kind != "teams" or not event.confirmed or event.trust != "sponsor" or event.chat_id is None:
            return False
        match = APPROVE.match(event.text)
        if match is None or await self.chat_type(event.chat_id) != "oneOnOne":
            return False
        if not await anyio.to_thread.run_sync(self.store.consume, event.key):
            return True  # read again (a resync after a restart): acted on once already
        try:
            person, released = await self.approve(match.group(1), via="sponsor_dm")
        except AccessError as exc:
            answer = f"{exc.message}. {exc.hint or ''}".strip()
        else:
            self.counters.approved_in_teams += 1
            answer = (f"Approved {person.name or person.upn or person.key}: they can reach me now"
                      + (f"; {released} held message{'s' if released != 1 else ''} released." if released else "."))
        log.info("access_approve_dm", chat=event.chat_id, ok=answer.startswith("Approved"))
        try:
            await self._say(event.chat_id, answer)
        except AgentSeatError as exc:
            log.warning("access_answer_failed", chat=event.chat_id, error=exc.message)
        return True

    # --- releasing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the approved people from `access.db` (another process may have added some)."""
        self._approved = set().union(*(p.names() for p in self.store.allowed()))

    async def release_allowed(self) -> int:
        """Hand every held message whose sender may now get through to the intake, in arrival order.

        Rows leave `access.db` only after the intake stored them; the inbox dedupes by event key,
        so a crash between the two releases nothing twice and loses nothing.
        """
        if self._intake is None:
            return 0
        async with self._release_lock:
            held = await anyio.to_thread.run_sync(self.store.held)
            ready = [h for h in held if self.decide(h.event) != "hold"]
            if not ready:
                return 0
            await self._intake.release([h.event for h in ready])
            await anyio.to_thread.run_sync(self.store.forget_held, [h.n for h in ready])
        self.counters.released += len(ready)
        log.info("access_released", count=len(ready))
        return len(ready)

    async def run(self) -> None:
        """The owner's duty: resolve names, then release what approvals (here or from the CLI) allow."""
        await self.resolve_names()
        seen: int | None = None  # its own mark: a sink's `refresh_if_changed` must not hide a change
        while True:
            try:
                version = await anyio.to_thread.run_sync(self.store.data_version)
                if version != seen:
                    await anyio.to_thread.run_sync(self.refresh)
                    await self.release_allowed()
                    seen = version
            except AgentSeatError as exc:  # a full disk, say: try again on the next round
                log.warning("access_release_failed", error=exc.message)
            await anyio.sleep(CHECK_SECONDS)

    def refresh_if_changed(self) -> bool:
        """`refresh` when another process wrote `access.db` since the last look; True if it did."""
        version = self.store.data_version()
        if version == self._version:
            return False
        self._version = version
        self.refresh()
        return True

    async def resolve_names(self) -> None:
        """Teams names senders by object id: look up the ids (and mail) of UPNs in the allowlist.

        Each name is looked up once per process (a failure is logged and not retried); whatever
        was held meanwhile for a name now known is released.
        """
        if self._graph is None:
            return
        found = False
        for name in sorted(n for n in self._configured | self._extra if "@" in n and n not in self._aliases):
            self._aliases[name] = set()  # claimed: a concurrent caller does not look it up again
            try:
                user = await self._graph.get(f"/users/{quote(name, safe='@')}", **{"$select": "id,mail"})
            except AgentSeatError as exc:
                log.warning("access_name_lookup_failed", user=name, error=exc.message)
                continue
            self._aliases[name] = _lower((str(user.get("id") or ""), str(user.get("mail") or "")))
            found = True
        if found:
            await self.release_allowed()

    # --- Graph ------------------------------------------------------------------------------------
    async def chat_type(self, chat_id: str) -> str:
        """`oneOnOne`, `group`, `meeting`, ... (cached); "" when Graph cannot say."""
        if chat_id not in self._chat_types and self._graph is not None:
            try:
                body = await self._graph.get(f"/chats/{quote(chat_id, safe=':@.')}", **{"$select": "chatType"})
                self._chat_types[chat_id] = str(body.get("chatType") or "")
            except AgentSeatError as exc:
                log.warning("access_chat_type_failed", chat=chat_id, error=exc.message)
                return ""
        return self._chat_types.get(chat_id, "")

    async def _addresses(self, user_id: str) -> tuple[str, str]:
        """The sender's UPN and mail, so their mail matches once they are approved by id."""
        if not user_id or self._graph is None:
            return "", ""
        try:
            user = await self._graph.get(f"/users/{quote(user_id, safe='')}",
                                         **{"$select": "userPrincipalName,mail"})
        except AgentSeatError:
            return "", ""  # a guest or another tenant's user: the id alone identifies them
        return str(user.get("userPrincipalName") or ""), str(user.get("mail") or "")

    async def _say(self, chat_id: str, text: str) -> None:
        assert self._graph is not None
        await self._graph.post(f"/chats/{quote(chat_id, safe=':@.')}/messages",
                               {"body": {"contentType": "text", "content": text}})

    def summary(self) -> dict[str, Any]:
        """For status: the policy and what it holds."""
        counts = self.store.held_counts()
        return {"policy": self.mode, "allowed": len(self.store.allowed()) + len(self._configured),
                "pending_codes": len(self.store.pending()), "held": sum(counts.values()),
                "counters": vars(self.counters)}


def approve_code(store: AccessStore, code: str, *, allow_external: bool, via: str) -> Person:
    """Approve a pending code (the CLI and the sponsor's DM share this rule)."""
    pending: PendingCode | None = store.code(code)
    if pending is not None and pending.external and not allow_external:
        raise AccessError("that sender is from another tenant and may not pair",
                          hint="set AGENTSEAT_ALLOW_EXTERNAL=1 to let people from other tenants pair")
    return store.approve_code(code, via=via)
