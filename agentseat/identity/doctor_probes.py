"""The probes of `agentseat doctor --live`, one function per thing a tenant may do differently.

Each probe asks Graph one cheap question with the agent's own delegated token (or reads
what the runtime or setup already recorded) and returns a `Finding`: one printed line,
plus the tenant fact it establishes. Recording the facts, printing and the report are
doctor_live.py's; the chat subscription lifetime probe, which needs a public URL, is
doctor_lifetime.py's. No probe reads or returns a message's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphError
from ..graph.client import GraphClient
from ..tenant_facts import TenantFacts
from .provision_graph import REQUIRED_SCOPES

__all__ = ["Finding", "blueprint_key_route", "chats_orderby", "mailbox", "scopes", "teams", "validation_tokens"]

#: The only ordering chat-list allows ("lastMessagePreview/createdDateTime desc"); the
#: poller asks for it, and entrabot's tenants answered it with 400.
CHATS_ORDERBY = "lastMessagePreview/createdDateTime desc"


@dataclass
class Finding:
    """What one probe found. `fact`/`value` are recorded in tenant facts when `fact` is set."""

    name: str
    status: str  # "ok" | "warn" | "skip"
    detail: str
    fact: str = ""
    value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # for the report: codes, statuses

    def render(self) -> str:
        mark = {"ok": "✓", "warn": "!", "skip": "–"}[self.status]
        return f"{mark} {self.name}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "status": self.status, "detail": self.detail}
        if self.fact:
            data |= {"fact": self.fact, "value": self.value}
        return data | self.extra


def _refusal(exc: GraphError) -> str:
    return f"{exc.status}{f' {exc.code}' if exc.code else ''}"


def validation_tokens(facts: TenantFacts) -> Finding:
    """The claims of the validation tokens in the last rich notification the runtime stored."""
    seen = facts.get("validation_tokens")
    if not isinstance(seen, dict) or not seen:
        return Finding("validation tokens", "skip", "none seen yet (the runtime records their claims from the "
                                                    "next rich notification it receives in webhook mode)")
    audience = str(seen.get("audience", "?"))
    claims = ", ".join(f"{k}={seen[k]}" for k in ("aud", "iss", "azp", "appid", "ver") if seen.get(k) is not None)
    status = "ok" if audience == "agent_identity" else "warn"
    meaning = {
        "agent_identity": "Graph signs them for the Agent Identity",
        "blueprint": "Graph signs them for the Blueprint, not the Agent Identity",
        "missing": "Graph sends none (validationTokens null): items are confirmed by fetching them from Graph",
        "other": "Graph signs them for an unexpected audience: items are confirmed by fetching them from Graph",
    }.get(audience, "")
    detail = f"audience {audience}" + (f": {meaning}" if meaning else "") + (f" ({claims})" if claims else "")
    return Finding("validation tokens", status, detail)


async def teams(graph: GraphClient) -> Finding:
    """Teams presence: one chat list of one chat (a 403 while Teams is still being provisioned)."""
    try:
        await graph.get("/me/chats", **{"$top": "1"})
    except GraphError as exc:
        return Finding("teams", "warn", f"not ready: GET /me/chats answers {_refusal(exc)} (Teams is provisioned "
                                        "after licensing and can take hours; agentseat retries)",
                       fact="teams", value="not_ready", extra={"http_status": exc.status, "code": exc.code})
    return Finding("teams", "ok", "ready: GET /me/chats answers", fact="teams", value="ready")


async def chats_orderby(graph: GraphClient, teams_ready: bool) -> Finding:
    """Does `$orderby` on /me/chats work (the docs allow it; some tenants answer 400)?

    Nothing else in the request differs from the Teams probe, so a 400 here is the ordering's.
    """
    if not teams_ready:
        return Finding("$orderby on /me/chats", "skip", "unknown: Teams is not ready, so chats cannot be listed")
    try:
        await graph.get("/me/chats", **{"$orderby": CHATS_ORDERBY, "$top": "1"})
    except GraphError as exc:
        if exc.status != 400:
            return Finding("$orderby on /me/chats", "warn", f"unknown: GET /me/chats answers {_refusal(exc)}",
                           extra={"http_status": exc.status, "code": exc.code})
        return Finding("$orderby on /me/chats", "warn", f"rejected ({_refusal(exc)}): agentseat lists chats "
                       "unordered and sorts them itself", fact="chats_orderby", value="rejected",
                       extra={"http_status": exc.status, "code": exc.code})
    return Finding("$orderby on /me/chats", "ok", "supported", fact="chats_orderby", value="supported")


async def mailbox(graph: GraphClient) -> Finding:
    """The mailbox: one message id from the inbox (404 MailboxNotEnabledForRESTAPI until provisioned)."""
    try:
        await graph.get("/me/mailFolders/inbox/messages", **{"$top": "1", "$select": "id"})
    except GraphError as exc:
        return Finding("mailbox", "warn", f"not ready: GET /me/mailFolders/inbox/messages answers {_refusal(exc)} "
                                          "(the mailbox is provisioned after licensing and can take hours; "
                                          "agentseat retries)",
                       fact="mailbox", value="not_ready", extra={"http_status": exc.status, "code": exc.code})
    return Finding("mailbox", "ok", "ready: the inbox answers", fact="mailbox", value="ready")


def scopes(claims: dict[str, Any]) -> Finding:
    """The delegated token's `scp` against what the runtime and its subscriptions need."""
    granted = sorted(set(str(claims.get("scp", "")).split()))
    missing = [s for s in REQUIRED_SCOPES if s not in granted]
    extra = {"granted": granted, "missing": missing}
    if missing:
        return Finding("granted scopes", "warn", f"missing {', '.join(missing)} (run `agentseat setup --grant`); "
                                                 f"granted: {' '.join(granted) or 'none'}", extra=extra)
    return Finding("granted scopes", "ok", f"all {len(REQUIRED_SCOPES)} that agentseat needs "
                                           f"({' '.join(granted)})", extra=extra)


def blueprint_key_route(facts: TenantFacts) -> Finding:
    """Which addKey/removeKey route works for the Blueprint, as `agentseat setup` found it.

    Not probed here: both routes change the Blueprint's keys and need the provisioner's
    AgentIdentityBlueprint.AddRemoveCreds.All, which the agent's own token never has.
    """
    route = facts.get("blueprint_key_route")
    if route == "blueprint":
        return Finding("blueprint key route", "ok", "blueprint: /applications/{id}/microsoft.graph."
                                                    "agentIdentityBlueprint/addKey works (recorded by setup)")
    if route == "generic":
        return Finding("blueprint key route", "warn", "generic: only /applications/{id}/addKey worked "
                                                      "(recorded by setup)")
    return Finding("blueprint key route", "skip", "unknown: setup has not recorded it yet, and the routes cannot "
                                                  "be tried without changing keys (`agentseat setup --rotate-key` "
                                                  "finds out)")
