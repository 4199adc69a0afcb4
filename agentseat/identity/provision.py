"""`agentseat setup` and `agentseat teardown`: plan, then apply.

Planning only reads: it finds what already exists (Blueprint, its principal, the Agent
Identity and its sponsors, the Agent User, the app role, the delegated grant, a licence, the
certificate on the Blueprint, the settings file) and lists a `Step` for each piece, done or to
do. Applying runs the steps that are not done, in order; each fills in what later ones need. So
a re-run finds everything done and reports "no changes", and `--dry-run` prints the plan only.
Nothing is applied while a check fails (`provision_checks.py`), and setup ends by waiting until
the agent can sign in and reach Graph (`provision_wait.py`). The plan's shape lives in
`provision_plan.py`, the Graph calls in `provision_graph.py`, the certificate store in `keys.py`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from ..config import Settings
from ..errors import AgentSeatError, ConfigError, GraphError, ProvisionError
from ..graph.client import GraphClient
from .configfile import read_env_file, update_env_file
from .keys import KeyStore
from .provision_graph import APPLICATION_READ_ALL, REQUIRED_SCOPES, Directory, ProvisionerTokens
from .provision_checks import NEEDS, local_problems, permission_problems, refuse
from .provision_plan import Action, Plan, apply_plan
from .provision_keys import KeySteps
from .provision_wait import ReplicationWait, confirm_seat

log = structlog.get_logger(__name__)

@dataclass
class SetupOptions:
    dry_run: bool = False
    grant_only: bool = False
    license_sku: str = ""
    rotate_key: bool = False
    retire_old: bool = False
    wait_seconds: float | None = None  # None: AGENTSEAT_SETUP_WAIT_SECONDS


@dataclass
class Seat:
    """What the tenant holds for this agent, as found and as created while applying."""

    tenant_id: str = ""
    domain: str = ""
    country: str = "US"
    sponsor_ids: list[str] = field(default_factory=list)
    blueprint: dict[str, Any] | None = None
    principal: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    upn: str = ""
    graph_sp_id: str = ""
    cert_sha1: str = ""
    created: int = 0  # objects created in this run: later calls may have to wait for replication


class Provisioner:
    """Plans and applies setup or teardown against one tenant."""

    def __init__(self, settings: Settings, directory: Directory, store: KeyStore, err: TextIO,
                 wait: ReplicationWait | None = None) -> None:
        self.settings = settings
        self.d = directory
        self.store = store
        self.err = err
        self.seat = Seat()
        self.wait = wait or ReplicationWait(settings.setup_wait_seconds, err)
        self.problems: list[AgentSeatError] = []  # found while planning; nothing is applied while any remain

    # --- discovery ------------------------------------------------------------------------
    async def discover(self, *, teardown: bool = False) -> None:
        s, d, seat = self.settings, self.d, self.seat
        org = await d.organization()
        seat.tenant_id = str(org.get("id") or s.tenant_id)
        domains = [v for v in org.get("verifiedDomains", []) if v.get("name")]
        default = next((v for v in domains if v.get("isDefault")), domains[0] if domains else None)
        wanted = s.agent_user_upn.partition("@")[2].lower()
        # A UPN must use one of the tenant's verified domains (user-post-users); the default one unless asked.
        chosen = next((v for v in domains if str(v["name"]).lower() == wanted), default)
        seat.domain = str(chosen["name"]) if chosen else ""
        seat.country = str(org.get("countryLetterCode") or "US")
        unknown = []
        for ref in ([] if teardown else s.sponsors):
            user = await d.user(ref)
            if user is None:
                unknown.append(ref)
            else:
                seat.sponsor_ids.append(str(user["id"]))
        if unknown:
            self.problems.append(ProvisionError(
                f"sponsor {', '.join(map(repr, unknown))} is not a user of tenant {seat.tenant_id}",
                hint="set AGENTSEAT_SPONSORS to the UPNs or object ids of people in this tenant"))
        found = await d.blueprints(app_id=s.blueprint_app_id) if s.blueprint_app_id else []
        found = found or await d.blueprints(name=s.agent_display_name)
        if len(found) > 1:
            raise ProvisionError(f"{len(found)} Agent Identity Blueprints are named {s.agent_display_name!r}",
                                 hint="set AGENTSEAT_BLUEPRINT_APP_ID to the one to use, or pick another "
                                 "AGENTSEAT_AGENT_DISPLAY_NAME")
        seat.blueprint = found[0] if found else None
        if seat.blueprint is not None:
            await self._discover_identity(str(seat.blueprint["appId"]))
        await self._discover_user(teardown)

    async def _discover_identity(self, bp_app_id: str) -> None:
        s, d, seat = self.settings, self.d, self.seat
        seat.principal = await d.blueprint_principal(bp_app_id)
        ids = [i for i in (await d.agent_identities(app_id=s.agent_id) if s.agent_id else [])
               if i.get("agentIdentityBlueprintId") == bp_app_id]
        if not ids:
            ids = await d.agent_identities(blueprint_app_id=bp_app_id)
            if len(ids) > 1:
                ids = [i for i in ids if i.get("displayName") == s.agent_display_name] or ids
            if len(ids) > 1:
                raise ProvisionError(f"the Blueprint {bp_app_id} has {len(ids)} Agent Identities",
                                     hint="set AGENTSEAT_AGENT_ID to the one this agent uses")
        seat.identity = ids[0] if ids else None

    async def _discover_user(self, teardown: bool) -> None:
        s, d, seat = self.settings, self.d, self.seat
        nickname = s.agent_user_upn.partition("@")[0] or _nickname(s.agent_display_name)
        seat.upn = f"{nickname}@{seat.domain}"
        parent = str(seat.identity["id"]) if seat.identity else ""
        user = await d.agent_user(parent_id=parent) if parent else None
        if user is None:
            by_upn = await d.agent_user(upn=seat.upn)
            if by_upn is not None and (not parent or by_upn.get("identityParentId") != parent):
                if not teardown:  # someone else's user: never ours to use, nor to delete
                    self.problems.append(ProvisionError(
                        f"the user name {seat.upn} is taken by another account",
                        hint="set AGENTSEAT_AGENT_USER_UPN to a free name for the Agent User"))
                return
            user = by_upn
        seat.user = user

    # --- setup ----------------------------------------------------------------------------
    async def plan_setup(self, options: SetupOptions) -> Plan:
        await self.discover()
        s, d, seat = self.settings, self.d, self.seat
        plan = Plan(f"agentseat setup: tenant {seat.tenant_id}")
        if options.grant_only:
            if not (seat.identity and seat.user):
                raise ProvisionError("`--grant` needs the Agent Identity and Agent User to exist",
                                     hint="run `agentseat setup` without --grant first")
            await self._plan_permissions(plan)
            return plan
        name = s.agent_display_name
        if seat.blueprint is None and not s.sponsors:
            self.problems.append(ProvisionError(
                "creating the Agent Identity Blueprint needs a sponsor",
                hint="set AGENTSEAT_SPONSORS to the UPN of the person responsible for the agent"))
        bp = seat.blueprint
        plan.check(bp is not None, f"Agent Identity Blueprint {name!r} exists ({bp and bp['appId']})",
                   f"create the Agent Identity Blueprint {name!r}",
                   "the agent's application: it holds the certificate and parents the Agent Identity "
                   "(agentidentityblueprint-post)", self._create_blueprint, NEEDS["blueprint"])
        plan.check(seat.principal is not None, "the Blueprint's service principal exists",
                   "create the Blueprint's service principal",
                   "Entra issues no token to a Blueprint without one; it is never implicit (entrabot Learning #2)",
                   self._create_principal, NEEDS["principal"])
        ident = seat.identity
        plan.check(ident is not None, f"Agent Identity {name!r} exists ({ident and ident['appId']})",
                   f"create the Agent Identity {name!r} with sponsors {', '.join(s.sponsors)}",
                   "the identity the agent acts as; the Blueprint impersonates it with fmi_path (agentidentity-post)",
                   self._create_identity, NEEDS["identity"])
        if ident is not None:
            present = await d.sponsors(str(ident["id"]))
            for ref, user_id in [(r, u) for r, u in zip(s.sponsors, seat.sponsor_ids) if u not in present]:
                plan.check(False, "", f"add sponsor {ref} to the Agent Identity",
                           "sponsors are the people the agent trusts and answers to (agentidentity-post-sponsors)",
                           self._sponsor_action(user_id), NEEDS["sponsor"])
        user = seat.user
        plan.check(user is not None, f"Agent User {user and user['userPrincipalName']} exists",
                   f"create the Agent User {seat.upn}",
                   "the user account with a mailbox and a Teams presence the agent signs in as (agentuser-post)",
                   self._create_user, NEEDS["agent_user"])
        await self._plan_permissions(plan)
        await self._plan_licence(plan, options.license_sku or s.license_sku_id)
        keys = KeySteps(self, options)
        await keys.plan(plan)
        self._plan_config(plan)
        return plan

    async def _graph_sp(self) -> str:
        if not self.seat.graph_sp_id:
            self.seat.graph_sp_id = str((await self.d.graph_principal())["id"])
        return self.seat.graph_sp_id

    async def _plan_permissions(self, plan: Plan) -> None:
        seat, d = self.seat, self.d
        graph_sp = await self._graph_sp()
        roles = await d.app_roles(str(seat.identity["id"])) if seat.identity else set()
        plan.check(APPLICATION_READ_ALL in roles, "the Agent Identity holds Application.Read.All",
                   "grant the Agent Identity the app role Application.Read.All",
                   "its app-only token reads its own sponsors (entrabot-anchor §7.2 step 5)", self._assign_role,
                   NEEDS["app_role"])
        grant = await d.grant(str(seat.identity["id"]), str(seat.user["id"]), graph_sp) \
            if seat.identity and seat.user else None
        have = str(grant.get("scope", "")).split() if grant else []
        missing = [sc for sc in REQUIRED_SCOPES if sc not in have]
        todo = (f"add delegated scopes {' '.join(missing)} to the existing grant" if grant
                else f"grant delegated consent for {' '.join(REQUIRED_SCOPES)}")
        plan.check(not missing, "delegated consent covers every scope the runtime needs", todo,
                   "hop 3 (user_fic) fails with AADSTS65001 without it; subscriptions need Chat.ReadWrite and "
                   "Mail.Read (oauth2permissiongrant-post, consentType Principal)", self._grant_action(grant, have),
                   NEEDS["grant"])

    async def _plan_licence(self, plan: Plan, sku: str) -> None:
        if not sku:
            return
        seat = self.seat
        skus = await self.d.subscribed_skus()
        match = next((x for x in skus if sku.lower() in (str(x.get("skuId")).lower(),
                                                         str(x.get("skuPartNumber")).lower())), None)
        if match is None:
            self.problems.append(ProvisionError(f"the tenant has no licence {sku!r}",
                                                hint="`--license` takes a skuId or skuPartNumber from "
                                                "GET /subscribedSkus"))
            return
        sku_id = str(match["skuId"])
        user = seat.user or {}
        assigned = {str(x.get("skuId")) for x in user.get("assignedLicenses") or []}
        if sku_id not in assigned:
            free = int((match.get("prepaidUnits") or {}).get("enabled", 0)) - int(match.get("consumedUnits", 0))
            if free <= 0:
                self.problems.append(ProvisionError(f"no {match.get('skuPartNumber')} licence is free",
                                                    hint="free one or buy more, then re-run `agentseat setup`"))
        plan.check(bool(user.get("usageLocation")), f"the Agent User's usage location is {user.get('usageLocation')}",
                   f"set the Agent User's usage location to {seat.country}",
                   "a licence cannot be assigned without one (user-assignlicense)", self._usage_location,
                   NEEDS["usage_location"])
        plan.check(sku_id in assigned, f"the Agent User holds licence {match.get('skuPartNumber')}",
                   f"assign licence {match.get('skuPartNumber')} to the Agent User",
                   "Teams and a mailbox need a licence; provisioning them takes minutes to hours",
                   self._licence_action(sku_id), NEEDS["licence"])

    def _plan_config(self, plan: Plan) -> None:
        path = self.settings.config_file
        assert path is not None
        done = False
        if self.seat.user and self.seat.identity and self.seat.blueprint and self.seat.cert_sha1:
            current = read_env_file(path)
            done = all(current.get(k) == v for k, v in self.config_values().items())
        plan.check(done, f"settings in {path} are current", f"write the agent's settings to {path}",
                   "the runtime reads its identity ids and certificate thumbprint from there", self._write_config)

    def config_values(self) -> dict[str, str]:
        s, seat = self.settings, self.seat
        assert seat.blueprint and seat.identity and seat.user
        values = {
            "AGENTSEAT_TENANT_ID": seat.tenant_id,
            "AGENTSEAT_BLUEPRINT_APP_ID": str(seat.blueprint["appId"]),
            "AGENTSEAT_BLUEPRINT_OBJECT_ID": str(seat.blueprint["id"]),
            "AGENTSEAT_AGENT_ID": str(seat.identity["appId"]),
            "AGENTSEAT_AGENT_OBJECT_ID": str(seat.identity["id"]),
            "AGENTSEAT_AGENT_USER_ID": str(seat.user["id"]),
            "AGENTSEAT_AGENT_USER_UPN": str(seat.user["userPrincipalName"]),
            "AGENTSEAT_CERT_THUMBPRINT": seat.cert_sha1,
            "AGENTSEAT_AUTHORITY_HOST": s.authority_host,
            "AGENTSEAT_GRAPH_URL": s.graph_url,
            "AGENTSEAT_GRAPH_RESOURCE": s.graph_resource,
            "AGENTSEAT_JWKS_URL": s.jwks_url,
        }
        if s.ca_bundle:
            values["AGENTSEAT_CA_BUNDLE"] = str(s.ca_bundle)
        if s.sponsors:
            values["AGENTSEAT_SPONSORS"] = ",".join(s.sponsors)
        return values

    # --- setup actions --------------------------------------------------------------------
    async def eventually(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run `call`, waiting out replication (within the run's budget) if it names something created
        in this run: Entra replicates new objects for seconds to minutes (entrabot Learnings #2 and #8),
        and until then a call naming one fails with 400/404."""
        while True:
            try:
                return await call()
            except GraphError as exc:
                if not self.seat.created or exc.status not in (400, 404):
                    raise
                if not await self.wait.pause("Graph to know the objects just created"):
                    raise ProvisionError(
                        f"after {self.wait.waited:.0f} s Graph still does not know an object created moments ago "
                        f"(HTTP {exc.status}{' ' + exc.code if exc.code else ''})",
                        hint="this is replication, which can take minutes: run `agentseat setup` again (it finds "
                        "what was made and goes on), or give it longer with `agentseat setup --wait 600`") from exc

    async def _create_blueprint(self) -> None:
        self.seat.blueprint = await self.d.create_blueprint(self.settings.agent_display_name, self.seat.sponsor_ids)
        self.seat.created += 1

    async def _create_principal(self) -> None:
        assert self.seat.blueprint
        app_id = str(self.seat.blueprint["appId"])
        self.seat.principal = await self.eventually(lambda: self.d.create_blueprint_principal(app_id))
        self.seat.created += 1

    async def _create_identity(self) -> None:
        assert self.seat.blueprint
        app_id = str(self.seat.blueprint["appId"])
        self.seat.identity = await self.eventually(
            lambda: self.d.create_agent_identity(self.settings.agent_display_name, app_id, self.seat.sponsor_ids))
        self.seat.created += 1

    def _sponsor_action(self, user_id: str) -> Action:
        async def add() -> None:
            assert self.seat.identity
            await self.d.add_sponsor(str(self.seat.identity["id"]), user_id)
        return add

    async def _create_user(self) -> None:
        assert self.seat.identity
        parent = str(self.seat.identity["id"])
        self.seat.user = await self.eventually(
            lambda: self.d.create_agent_user(self.settings.agent_display_name, self.seat.upn, parent))
        self.seat.created += 1

    async def _assign_role(self) -> None:
        assert self.seat.identity
        sp_id = str(self.seat.identity["id"])
        graph_sp = await self._graph_sp()
        await self.eventually(lambda: self.d.assign_app_role(sp_id, graph_sp, APPLICATION_READ_ALL))

    def _grant_action(self, grant: dict[str, Any] | None, have: list[str]) -> Action:
        async def apply() -> None:
            assert self.seat.identity and self.seat.user
            merged = [*have, *[sc for sc in REQUIRED_SCOPES if sc not in have]]
            if grant is not None:
                # One grant per client, resource and user: scopes are merged into it (oauth2permissiongrant-update).
                await self.d.set_grant_scopes(str(grant["id"]), merged)
                return
            client, user, graph_sp = str(self.seat.identity["id"]), str(self.seat.user["id"]), await self._graph_sp()
            await self.eventually(lambda: self.d.create_grant(client, user, graph_sp, merged))
        return apply

    async def _usage_location(self) -> None:
        assert self.seat.user
        user_id = str(self.seat.user["id"])
        await self.eventually(lambda: self.d.set_usage_location(user_id, self.seat.country))

    def _licence_action(self, sku_id: str) -> Action:
        async def apply() -> None:
            assert self.seat.user
            await self.d.assign_licence(str(self.seat.user["id"]), sku_id)
        return apply

    async def _write_config(self) -> None:
        assert self.settings.config_file is not None
        update_env_file(self.settings.config_file, self.config_values())

def _nickname(display_name: str) -> str:
    """A mailNickname from the display name: user-post-users allows A-Z a-z 0-9 ' . - _ ! # ^ ~."""
    return re.sub(r"[^a-z0-9._-]+", "-", display_name.lower()).strip("-.") or "agent"


async def run_provisioner(settings: Settings, work: Callable[[Provisioner], Awaitable[int]], err: TextIO) -> int:
    """Build the provisioner's Graph client around `work`."""
    store = KeyStore(settings)
    async with GraphClient(settings, ProvisionerTokens(settings)) as graph:
        return await work(Provisioner(settings, Directory(settings, graph), store, err))


async def setup(settings: Settings, options: SetupOptions, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """`agentseat setup`: check, print the plan on `out` (stdout), apply it unless it is a dry run, then
    wait (progress on `err`) until the agent can sign in and reach Graph.

    Nothing is changed while a check fails: local checks first, then the tenant's, all reported at once.
    """
    out, err = out or sys.stdout, err or sys.stderr
    store = KeyStore(settings)
    wait = ReplicationWait(settings.setup_wait_seconds if options.wait_seconds is None else options.wait_seconds,
                           err)
    problems = local_problems(settings, store, rotate_key=options.rotate_key, grant_only=options.grant_only)
    try:
        tokens = ProvisionerTokens(settings)
    except ConfigError:
        refuse(problems)  # the error is among them; without the provisioner nothing in the tenant can be checked
        raise
    async with GraphClient(settings, tokens) as graph:
        p = Provisioner(settings, Directory(settings, graph), store, err, wait)
        try:
            plan = await p.plan_setup(options)
        except ProvisionError as exc:
            refuse([*problems, exc])
            raise
        print(plan.render(), file=out, flush=True)
        refuse([*problems, *p.problems, *permission_problems(plan, await tokens.get())])
        if not plan.changes:
            print("no changes", file=out)
        elif options.dry_run:
            print(f"dry run: {len(plan.changes)} change(s) planned, nothing changed", file=out)
            return 0
        else:
            applied = await apply_plan(plan, err)
            print(f"applied {applied} change(s)", file=out, flush=True)
        await confirm_seat(p, changed=bool(plan.changes))
    return 0
