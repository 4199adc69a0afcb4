"""`agentseat teardown`: the reverse of setup, planned and applied the same way.

It deletes, in order, the Agent Identity's delegated grants, the Agent User, the Agent
Identity, the Blueprint's service principal and the Blueprint, then the local certificates and
keys, then the identity settings in the config file. Each step is skipped when its object is
already gone, so a second run reports "no changes". It changes nothing without `--yes`, and a
user whose name matches but who is not this agent's (another identity parents it) is never touched.
"""

from __future__ import annotations

import sys
from typing import TextIO

import anyio
import structlog

from ..config import Settings
from ..errors import ProvisionError
from .configfile import read_env_file, update_env_file
from .provision import Action, Plan, Provisioner, apply_plan, run_provisioner

log = structlog.get_logger(__name__)

IDENTITY_KEYS = ("AGENTSEAT_BLUEPRINT_APP_ID", "AGENTSEAT_BLUEPRINT_OBJECT_ID", "AGENTSEAT_AGENT_ID",
                 "AGENTSEAT_AGENT_OBJECT_ID", "AGENTSEAT_AGENT_USER_ID", "AGENTSEAT_CERT_THUMBPRINT")


async def plan_teardown(p: Provisioner) -> Plan:
    """Find what setup made (by the configured ids, else by name) and plan its deletion."""
    await p.discover(teardown=True)
    seat, d = p.seat, p.d
    plan = Plan(f"agentseat teardown: tenant {seat.tenant_id}", mark="-")
    ident, user, principal, bp = seat.identity, seat.user, seat.principal, seat.blueprint
    grants = await d.grants_of(str(ident["id"])) if ident else []
    for grant in grants:
        plan.check(False, "", f"delete the delegated grant {grant['id']}", "the Agent Identity's delegated consent",
                   _delete(p, f"/oauth2PermissionGrants/{grant['id']}"))
    if not grants:
        plan.check(True, "no delegated grant", "", "")
    if user is None:
        plan.check(True, "no Agent User", "", "")
    else:
        plan.check(False, "", f"delete the Agent User {user['userPrincipalName']}",
                   "the account the agent signs in as, with its mailbox", _delete(p, f"/users/{user['id']}"))
    if ident is None:
        plan.check(True, "no Agent Identity", "", "")
    else:
        plan.check(False, "", f"delete the Agent Identity {ident['appId']}", "the identity the agent acts as",
                   _delete(p, f"/servicePrincipals/{ident['id']}"))
    if principal is None:
        plan.check(True, "no Blueprint service principal", "", "")
    else:
        plan.check(False, "", "delete the Blueprint's service principal", "the Blueprint's presence in the tenant",
                   _delete(p, f"/servicePrincipals/{principal['id']}"))
    if bp is None:
        plan.check(True, "no Agent Identity Blueprint", "", "")
    else:
        plan.check(False, "", f"delete the Agent Identity Blueprint {bp['appId']}",
                   "the agent's application, with every certificate registered on it",
                   _delete(p, f"/applications/{bp['id']}"))
    for cert in await anyio.to_thread.run_sync(p.store.list):
        plan.check(False, "", f"delete the local certificate and key {cert.sha1}",
                   "a key for a deleted Blueprint opens nothing and should not linger", _retire(p, cert.sha1))
    path = p.settings.config_file
    assert path is not None
    present = [k for k in IDENTITY_KEYS if k in read_env_file(path)]

    async def forget() -> None:
        await anyio.to_thread.run_sync(update_env_file, path, dict.fromkeys(IDENTITY_KEYS))

    plan.check(not present, f"no identity settings in {path}", f"remove the identity settings from {path}",
               "they name objects that no longer exist", forget)
    return plan


def _delete(p: Provisioner, path: str) -> Action:
    async def apply() -> None:
        if not await p.d.delete(path):
            log.info("provision_already_deleted", path=path)
    return apply


def _retire(p: Provisioner, sha1: str) -> Action:
    def retire() -> None:
        if p.store.active() == sha1:
            # KeyStore retires only inactive certificates; teardown retires them all, so the
            # active marker (the `active` file of KeyStore's documented layout) goes first.
            (p.store.dir / "active").unlink(missing_ok=True)
        p.store.retire(sha1)

    async def apply() -> None:
        await anyio.to_thread.run_sync(retire)
    return apply


async def teardown(settings: Settings, *, dry_run: bool = False, yes: bool = False, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    """Print the plan on `out` (stdout); delete only with `yes` and not a dry run."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(p: Provisioner) -> int:
        plan = await plan_teardown(p)
        print(plan.render(), file=out, flush=True)
        if not plan.changes:
            print("no changes", file=out)
        elif dry_run:
            print(f"dry run: {len(plan.changes)} change(s) planned, nothing changed", file=out)
        elif not yes:
            raise ProvisionError("teardown deletes the agent's identity, mailbox and keys; nothing was changed",
                                 hint="re-run with --yes to confirm, or --dry-run to only see the plan")
        else:
            print(f"applied {await apply_plan(plan, err)} change(s)", file=out)
        return 0

    return await run_provisioner(settings, work, err)
