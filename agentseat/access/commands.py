"""`agentseat access list|approve|deny|revoke`, and the held messages `agentseat inbox` shows.

Terminal commands only: they act on what the user typed, never on a chat message. They write
`access.db`; a running runtime notices the change within a second and releases what an
approval allows (a runtime started later does it at startup). Output goes to `out`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TextIO

from .policy import approve_code
from .store import CODE_LENGTH, AccessError, AccessStore, Held, PendingCode, normalise_code

if TYPE_CHECKING:
    from ..config import Settings

RELEASE_NOTE = "the agent's runtime releases them into its inbox now, or at its next start"


def open_store(settings: Settings) -> AccessStore:
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return AccessStore(settings.state_dir / "access.db")


def held_messages(settings: Settings, limit: int = 100) -> list[Held]:
    """Messages held by the access policy, oldest first (for `agentseat inbox`)."""
    store = open_store(settings)
    try:
        return store.held(limit)
    finally:
        store.close()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _who(name: str, *addresses: str) -> str:
    address = next((a for a in addresses if a), "")
    return f"{name} <{address}>" if name and address else (name or address or "?")


def _held_by_sender(store: AccessStore) -> dict[str, list[Held]]:
    groups: dict[str, list[Held]] = {}
    for held in store.held(10_000):
        groups.setdefault(held.sender_key, []).append(held)
    return groups


def access_list(settings: Settings, out: TextIO) -> int:
    """Policy, allowlist, pending codes and held counts."""
    store = open_store(settings)
    try:
        external = "may" if settings.allow_external else "may not"
        print(f"policy: {settings.inbound_policy} (people from other tenants {external} pair)", file=out)
        if settings.inbound_policy == "sponsors":
            print("  only sponsors get through; the allowlist below is not used under this policy", file=out)
        people = store.allowed()
        print(f"allowed ({len(people) + len(settings.allow)}):", file=out)
        for name in settings.allow:
            print(f"  {name}  (AGENTSEAT_ALLOW)", file=out)
        for person in people:
            ident = f" id {person.sender_id}" if person.sender_id else ""
            line = f"  {_who(person.name, person.upn, person.mail, person.key)}{ident}  "
            print(f"{line}(approved {_when(person.added_at)}, {person.via})", file=out)
        pending = store.pending()
        print(f"pending codes ({len(pending)}):", file=out)
        for code in pending:
            minutes = max(0, round((code.expires_at - time.time()) / 60))
            origin = " from another tenant" if code.external else ""
            who = _who(code.name, code.upn, code.sender_key)
            print(f"  {code.code}  {who}{origin}, expires in {minutes} min", file=out)
        groups = _held_by_sender(store)
        print(f"held messages ({sum(len(g) for g in groups.values())}):", file=out)
        for key, items in groups.items():
            first = items[0].event
            kinds = ", ".join(sorted({h.event.kind for h in items}))
            who = _who(first.sender_name, first.sender_upn, key)
            print(f"  {who}: {len(items)} ({kinds}), first {_when(items[0].held_at)}", file=out)
        return 0
    finally:
        store.close()


def _looks_like_code(target: str) -> bool:
    return len(target.strip()) == CODE_LENGTH and "@" not in target


def _held_sender(store: AccessStore, target: str) -> list[Held]:
    name = target.strip().lower()
    return [h for h in store.held(10_000)
            if name in {h.sender_key, h.event.sender_id.lower(), h.event.sender_upn.lower()} - {""}]


def access_approve(settings: Settings, target: str, out: TextIO) -> int:
    """Approve a pairing code, or a sender whose messages are held (a mail sender has no code)."""
    store = open_store(settings)
    try:
        if _looks_like_code(target) and store.code(target) is not None:
            person = approve_code(store, target, allow_external=settings.allow_external, via="cli")
            names = person.names()
            held = sum(1 for h in store.held(10_000)
                       if names & {h.sender_key, h.event.sender_id.lower(), h.event.sender_upn.lower()})
        else:
            items = _held_sender(store, target)
            if not items:
                raise _unknown(target)
            first = items[0].event
            if any(h.event.trust == "external" for h in items) and not settings.allow_external:
                raise AccessError(f"{target} is from another tenant and may not pair",
                                  hint="set AGENTSEAT_ALLOW_EXTERNAL=1 to let people from other tenants pair")
            person = store.add_allowed(items[0].sender_key, sender_id=first.sender_id,
                                       upn=first.sender_upn, name=first.sender_name, via="cli")
            store.drop_code_of(items[0].sender_key)
            held = len(items)
        released = f"; {held} held message{'s' if held != 1 else ''}: {RELEASE_NOTE}" if held else ""
        print(f"approved {_who(person.name, person.upn, person.mail, person.key)}{released}", file=out)
        return 0
    finally:
        store.close()


def access_deny(settings: Settings, target: str, out: TextIO) -> int:
    """Drop a pairing code (or a sender) and every message they have held."""
    store = open_store(settings)
    try:
        if _looks_like_code(target) and store.code(target) is not None:
            pending: PendingCode
            pending, dropped = store.deny_code(target)
            who = _who(pending.name, pending.upn, pending.sender_key)
        else:
            if not _held_sender(store, target):
                raise _unknown(target)
            who, dropped = target, store.drop_sender(target)
        print(f"denied {who}; {dropped} held message{'s' if dropped != 1 else ''} dropped", file=out)
        return 0
    finally:
        store.close()


def access_revoke(settings: Settings, name: str, out: TextIO) -> int:
    """Remove someone from the allowlist (by object id, UPN or mail address)."""
    store = open_store(settings)
    try:
        removed = store.remove_allowed(name)
        if not removed:
            if name.strip().lower() in {a.lower() for a in settings.allow}:
                raise AccessError(f"{name} is allowed by the setting AGENTSEAT_ALLOW",
                                  hint="remove them from AGENTSEAT_ALLOW and restart the agent")
            raise AccessError(f"{name} is not on the allowlist", hint="`agentseat access list` shows it")
        for person in removed:
            who = _who(person.name, person.upn, person.mail, person.key)
            print(f"revoked {who}: their next messages are held", file=out)
        return 0
    finally:
        store.close()


def _unknown(target: str) -> AccessError:
    if _looks_like_code(target):
        return AccessError(f"no pending pairing code {normalise_code(target)!r}",
                           hint="codes expire after 1 hour; `agentseat access list` shows the pending ones")
    return AccessError(f"no held messages from {target!r}",
                       hint="`agentseat access list` shows codes and held senders; "
                            "to allow someone ahead of time, add them to AGENTSEAT_ALLOW")
