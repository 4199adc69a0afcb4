"""What `agentseat setup` checks before it changes anything, and how it reports what it found.

A setup that fails half-way leaves a tenant changed for nothing: on a headless machine without
a keyring it used to grant consent and only then find nowhere to keep the key's passphrase.
So every check that changes nothing runs first: the local ones here (the provisioner's
credential, the key store, the files setup writes) before any network call, the tenant's ones
(sponsors, the user name, a licence) while planning (`Provisioner.problems`). `refuse` then
reports them all at once, each with its fix, and setup changes nothing while one remains.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ..config import Settings
from ..errors import AgentSeatError, ConfigError, KeyStoreError, ProvisionError
from .keys import KeyStore
from .provision_graph import ProvisionerTokens
from .provision_plan import Plan
from .tokens import decode_jwt

#: Application permissions that let the provisioner make each kind of change, any one suffices
#: (least privileged first, from each call's Graph page; README "A real tenant" has the table).
NEEDS: dict[str, tuple[str, ...]] = {
    "blueprint": ("AgentIdentityBlueprint.Create", "AgentIdentityBlueprint.ReadWrite.All"),
    "principal": ("AgentIdentityBlueprintPrincipal.Create", "AgentIdentityBlueprintPrincipal.ReadWrite.All"),
    "identity": ("AgentIdentity.Create.All", "AgentIdentity.CreateAsManager", "AgentIdentity.ReadWrite.All"),
    "sponsor": ("AgentIdentity.ReadWrite.All",),
    "agent_user": ("AgentIdUser.ReadWrite.IdentityParentedBy", "AgentIdUser.ReadWrite.All", "User.ReadWrite.All"),
    "app_role": ("AppRoleAssignment.ReadWrite.All",),
    "grant": ("DelegatedPermissionGrant.ReadWrite.All",),
    "usage_location": ("User.ReadWrite.All", "AgentIdUser.ReadWrite.All", "Directory.ReadWrite.All"),
    "licence": ("LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
    # Typed Blueprint routes first, the generic application routes as the fallback (provision_graph.py).
    "keys": ("AgentIdentityBlueprint.AddRemoveCreds.All", "AgentIdentityBlueprint.ReadWrite.All",
             "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"),
}


def local_problems(settings: Settings, store: KeyStore, *, rotate_key: bool, grant_only: bool) -> list[AgentSeatError]:
    """Problems found on this machine alone: no network, no write."""
    problems: list[AgentSeatError] = []
    try:
        ProvisionerTokens(settings).check()
    except ConfigError as exc:
        problems.append(exc)
    problems += _key_problems(store, rotate_key=rotate_key, grant_only=grant_only)
    assert settings.config_file is not None
    for path, what in ((settings.config_file, "the config file"), (store.dir, "the key store")):
        if not _writable(path):
            problems.append(ConfigError(f"setup cannot write {what} {path}",
                                        hint=f"make {_nearest(path)} writable by you, or set AGENTSEAT_STATE_DIR "
                                        "(or AGENTSEAT_CONFIG_FILE) to a directory you own"))
    return problems


def permission_problems(plan: Plan, token: str) -> list[AgentSeatError]:
    """Planned changes the provisioner's app-only token (its `roles` claim) holds no permission for."""
    try:
        roles = set(decode_jwt(token)[1].get("roles") or [])
    except ValueError:
        return []  # not a JWT we can read: Graph will say what is missing
    problems: list[AgentSeatError] = []
    for step in plan.changes:
        if step.needs and not roles.intersection(step.needs):
            problems.append(ProvisionError(
                f"the provisioner app may not {step.what}: it holds none of {', '.join(step.needs)}",
                hint=f"grant the provisioner app the Graph application permission {step.needs[0]} "
                "(with admin consent)"))
    return problems


def _key_problems(store: KeyStore, *, rotate_key: bool, grant_only: bool) -> list[AgentSeatError]:
    try:
        stored = store.list()
    except KeyStoreError as exc:
        return [exc]
    active = next((c for c in stored if c.active), None)
    now = dt.datetime.now(dt.timezone.utc)
    usable = active is not None and active.not_after > now
    problems: list[AgentSeatError] = []
    if not grant_only and (rotate_key or not usable):
        try:  # a new certificate will be made: its key's passphrase needs a home
            store.check_can_store()
        except KeyStoreError as exc:
            problems.append(exc)
    if usable and active is not None:
        try:  # the active key signs the addKey proof and the sign-in setup ends with
            store.load(active.sha1)
        except KeyStoreError as exc:
            problems.append(exc)
    return problems


def _nearest(path: Path) -> Path:
    """`path` or its closest existing ancestor (what must be writable to create it)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> bool:
    target = _nearest(path)
    if target == Path(path).absolute() and target.is_file():
        return os.access(target, os.W_OK)
    return target.is_dir() and os.access(target, os.W_OK | os.X_OK)


def refuse(problems: list[AgentSeatError]) -> None:
    """Raise when there are problems: the one error as it is, or all of them in one error."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    lines = [f"setup changed nothing: {len(problems)} problems to fix first"]
    for number, problem in enumerate(problems, 1):
        lines.append(f"  {number}. {problem.message}")
        if problem.hint:
            lines.append(f"     fix: {problem.hint}")
    raise ProvisionError("\n".join(lines), hint="fix them, then run `agentseat setup` again")
