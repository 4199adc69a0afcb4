"""Every subscription its own clientState: after a URL move, and after an upgrade from the shared one.

Earlier versions kept one secret in `state_dir/client_state` for every
subscription. After an upgrade, their live subscriptions must keep verifying
until the first sync replaces them with subscriptions of their own secrets;
then the file goes, and the old secret verifies only the replaced ids' change
notifications, for a short grace, and never their lifecycle events.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentseat.runtime.app import Runtime
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.pipeline import parse_collection, screen_items
from agentseat.sandbox.app import Sandbox
from agentseat.subscriptions.manager import SubscriptionManager
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import free_port

from ._lifecycle import live, running

LEGACY = "legacy-shared-secret-" + "s" * 40


def _as_the_old_version_left_it(sandbox: Sandbox, state_dir: Path) -> dict[str, str]:
    """Subscriptions made with the shared secret, state saved without secrets, the file beside it."""
    ids = {kind: live(sandbox, kind).id for kind in ("teams", "mail")}

    def share() -> None:
        for sub in sandbox.tenant.subscriptions.values():
            sub.client_state = LEGACY

    sandbox.portal.call(share)  # type: ignore[attr-defined]
    inbox = Inbox(state_dir / "inbox.db")
    try:
        saved = json.loads(inbox.get_meta("subscriptions") or "{}")
        inbox.set_meta("subscriptions", json.dumps(
            {k: {f: v for f, v in s.items() if f != "client_state"} for k, s in saved.items()}))
    finally:
        inbox.close()
    fd = os.open(state_dir / "client_state", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(LEGACY)
    return ids


def _screened(known: Any, tenant: str, *items: dict[str, Any]) -> int:
    collection = parse_collection(json.dumps({"value": list(items)}).encode())
    accepted, _ = screen_items(collection, known, tenant_id=tenant, lifecycle_endpoint=False)
    return len(accepted)


def _change(sub_id: str, secret: str, tenant: str) -> dict[str, Any]:
    resource = "chats('19:a@unq.gbl.spaces')/messages('1')"
    return {"subscriptionId": sub_id, "changeType": "created", "clientState": secret, "tenantId": tenant,
            "subscriptionExpirationDateTime": "2026-02-02T11:00:00Z", "resource": resource,
            "resourceData": {"id": "1", "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": resource}}


async def test_upgrade_keeps_the_shared_secret_verifying_until_the_first_sync_replaces_it(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    port = str(free_port())  # the same public URL before and after the upgrade
    state_dir = Path(agent_env["AGENTSEAT_STATE_DIR"])
    async with running(agent_env, webhook_port=port):
        pass
    old = _as_the_old_version_left_it(sandbox, state_dir)
    tenant = settings_from_env(agent_env).tenant_id

    # Started, not yet synced (the webhook is up before the first sync): the old
    # subscriptions verify with the old secret.
    runtime = Runtime(settings_from_env({**agent_env, "AGENTSEAT_WEBHOOK_PORT": port}))
    try:
        cert = runtime.keys.load(runtime.settings.cert_thumbprint)

        async def no_resync(kind: str, reason: str) -> None:
            return None

        manager = SubscriptionManager(runtime.settings, runtime.graph, runtime.inbox, certificate_b64=cert.der_b64,
                                      certificate_id=cert.sha1_thumbprint, on_resync=no_resync)
        assert _screened(manager.known, tenant, _change(old["teams"], LEGACY, tenant)) == 1
        assert _screened(manager.known, tenant, _change(old["teams"], "guess", tenant)) == 0
    finally:
        await runtime.aclose()

    async with running(agent_env, webhook_port=port) as rt:
        new = {kind: live(sandbox, kind) for kind in ("teams", "mail")}
        assert {s.id for s in new.values()}.isdisjoint(old.values())  # replaced
        secrets = {s.client_state for s in new.values()}
        assert LEGACY not in secrets and len(secrets) == 2 and "" not in secrets and None not in secrets
        assert not (state_dir / "client_state").exists()
        assert "client_state" not in repr(rt.manager.states) and LEGACY not in repr(rt.manager.known)

        # The old id's change notifications still verify for a short grace...
        assert _screened(rt.manager.known, tenant, _change(old["teams"], LEGACY, tenant)) == 1
        # ...the old secret verifies nothing else...
        assert _screened(rt.manager.known, tenant, _change(new["teams"].id, LEGACY, tenant)) == 0
        received = sum(rt.manager.counters.received.values())
        assert await rt.post([rt.item(sandbox, "reauthorizationRequired", client_state=LEGACY)]) == 202
        assert sum(rt.manager.counters.received.values()) == received
        # ...and lifecycle events for the old id are dropped, counted.
        assert await rt.post([rt.item(sandbox, "subscriptionRemoved", subscription=old["teams"],
                                      client_state=LEGACY)]) == 202
        assert rt.manager.counters.dropped["not_held"] == 1
        await rt.settled()
        assert live(sandbox, "teams").id == new["teams"].id


async def test_a_url_move_gives_every_subscription_a_fresh_secret(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env):
        before = {kind: live(sandbox, kind) for kind in ("teams", "mail")}
    async with running(agent_env) as rt:  # a new port: the tunnel URL changed
        after = {kind: live(sandbox, kind) for kind in ("teams", "mail")}
        assert after["teams"].notification_url != before["teams"].notification_url
        old_secrets = {s.client_state for s in before.values()}
        assert {s.client_state for s in after.values()}.isdisjoint(old_secrets)
        assert after["teams"].client_state != after["mail"].client_state
        for kind in ("teams", "mail"):
            assert rt.manager.known[after[kind].id].client_state == after[kind].client_state
            assert rt.manager.states[kind].client_state == after[kind].client_state


async def test_a_restart_while_graph_cannot_list_keeps_what_it_holds(sandbox: Sandbox,
                                                                     agent_env: dict[str, str]) -> None:
    from tests.runtime.test_runtime import control

    port = str(free_port())
    async with running(agent_env, webhook_port=port):
        before = {kind: live(sandbox, kind).id for kind in ("teams", "mail")}
    await control(sandbox, "POST", "/_sandbox/faults",
                  {"graph": [{"route": "GET /subscriptions", "rate": 1.0, "status": 503, "retry_after": 0.05}]})
    creates = sandbox.stats.requests["POST /subscriptions"]
    async with running(agent_env, webhook_port=port, graph_deadline_seconds="1") as rt:
        assert sandbox.stats.requests["GET /subscriptions"] >= 1  # the list was asked for, and failed
        assert {kind: live(sandbox, kind).id for kind in ("teams", "mail")} == before
        assert sandbox.stats.requests["POST /subscriptions"] == creates
        assert all(rt.manager.known.holds(rt.manager.known[sub_id]) for sub_id in before.values())
