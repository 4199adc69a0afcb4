"""`agentseat setup` and `teardown` (identity/provision*.py, teardown.py) against the sandbox tenant.

Changes are proved on the sandbox's side: its tenant objects, and its request counters for
writes; credentials are proved by signing in with them (hop 1 over real HTTPS).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentseat.config import Settings
from agentseat.errors import ConfigError, KeyStoreError, ProvisionError, TokenError
from agentseat.graph.client import GraphClient
from agentseat.identity.configfile import read_env_file
from agentseat.identity.keys import KeyStore
from agentseat.identity.provision import SetupOptions, setup
from agentseat.identity.teardown import teardown
from agentseat.identity.tokens import TokenChain, TokenProvider
from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.envfile import sandbox_settings
from agentseat.sandbox.tenant import AGENT_SCOPES, TEAMS_SKU_ID
from tests.sandbox._agent import grant_agent_consent, hop1, register_agent_cert

PASSPHRASE = "provision-test-passphrase"
WRITES = ("POST ", "PATCH ", "DELETE ", "PUT ")
#: The Blueprint's typed route, which setup writes keys on first (agentidentityblueprint-addkey/-update).
TYPED = "/applications/{object_id}/microsoft.graph.agentIdentityBlueprint"


def control(sb: Sandbox, method: str, path: str) -> Any:
    req = urllib.request.Request(sb.url + path, method=method)
    with urllib.request.urlopen(req, context=sb.client_ssl_context()) as resp:  # noqa: S310 - loopback https
        return json.loads(resp.read() or b"null")


def writes(sb: Sandbox) -> dict[str, int]:
    """Graph write requests since the last stats reset, by route."""
    return {k: v for k, v in control(sb, "GET", "/_sandbox/stats")["requests"].items() if k.startswith(WRITES)}


def _sandbox_env(sb: Sandbox) -> dict[str, str]:
    return {k[len("AGENTSEAT_"):].lower(): v for k, v in sandbox_settings(sb).items() if k != "AGENTSEAT_SANDBOX_URL"}


def seat_settings(sb: Sandbox, state: Path, **overrides: Any) -> Settings:
    """What `agentseat --env-file sandbox.env --state-dir <state>` starts from."""
    values = {**_sandbox_env(sb), "state_dir": str(state), "key_passphrase": PASSPHRASE, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def configured(sb: Sandbox, state: Path, **overrides: Any) -> Settings:
    """The config file setup wrote, plus the provisioner's credential (which it never writes)."""
    provisioner = {k: v for k, v in _sandbox_env(sb).items() if k.startswith("provisioner_")}
    return Settings(_env_file=(str(state / "agentseat.env"),), state_dir=state,  # type: ignore[call-arg]
                    key_passphrase=PASSPHRASE, **{**provisioner, **overrides})


async def run_setup(settings: Settings, **options: Any) -> str:
    out = io.StringIO()
    assert await setup(settings, SetupOptions(**options), out=out, err=io.StringIO()) == 0
    return out.getvalue()


async def me(settings: Settings) -> dict[str, Any]:
    store = KeyStore(settings)
    provider = TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))
    async with GraphClient(settings, provider) as graph:
        return dict(await graph.get("/me"))


def blueprint_sha1s(sb: Sandbox, app_id: str | None = None) -> set[str]:
    return {kc.sha1 for kc in sb.tenant.apps[app_id or sb.role("blueprint")].key_credentials}


async def hop1_with(settings: Settings, sha1: str) -> str:
    store = KeyStore(settings)
    chain = TokenChain(settings, lambda: store.load_pem_credential(sha1))
    return str(await anyio.to_thread.run_sync(chain.hop1))


async def test_setup_gives_the_demo_agent_key_permissions_and_settings(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "agentseat.env").write_text("# my notes\nAGENTSEAT_LOG_LEVEL=debug\nUNRELATED=keep me\n")
    out = await run_setup(seat_settings(sandbox, state))
    assert "applied 4 change(s)" in out
    config = read_env_file(state / "agentseat.env")
    assert stat.S_IMODE(os.stat(state / "agentseat.env").st_mode) == 0o600
    assert config["UNRELATED"] == "keep me" and config["AGENTSEAT_LOG_LEVEL"] == "debug"
    assert "# my notes" in (state / "agentseat.env").read_text()
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    assert config["AGENTSEAT_AGENT_ID"] == identity.app_id
    assert config["AGENTSEAT_AGENT_OBJECT_ID"] == identity.sp_object_id
    assert config["AGENTSEAT_AGENT_USER_ID"] == sandbox.role("agent_user")
    assert config["AGENTSEAT_GRAPH_URL"] == sandbox.graph_url
    assert config["AGENTSEAT_TENANT_ID"] == sandbox.tenant.tenant_id
    assert blueprint_sha1s(sandbox) == {config["AGENTSEAT_CERT_THUMBPRINT"]}
    assert "Application.Read.All" in identity.roles
    assert sandbox.tenant.granted_scopes(identity.app_id, sandbox.role("agent_user")) == set(AGENT_SCOPES)
    assert (await me(configured(sandbox, state)))["id"] == sandbox.role("agent_user")


async def test_a_second_setup_reports_no_changes_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state")
    await run_setup(settings)
    before = (tmp_path / "state" / "agentseat.env").read_text()
    control(sandbox, "DELETE", "/_sandbox/stats")
    out = await run_setup(configured(sandbox, tmp_path / "state"))
    assert out.rstrip().endswith("no changes") and "+ " not in out
    assert writes(sandbox) == {}
    assert (tmp_path / "state" / "agentseat.env").read_text() == before


async def test_dry_run_prints_the_plan_and_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", agent_display_name="dry agent", agent_user_upn="")
    control(sandbox, "DELETE", "/_sandbox/stats")
    out = await run_setup(settings, dry_run=True, license_sku="SPE_E3")
    assert "+ create the Agent Identity Blueprint 'dry agent'" in out and "+ create the Agent User dry-agent@" in out
    assert "dry run: 10 change(s) planned, nothing changed" in out
    assert writes(sandbox) == {}
    assert KeyStore(settings).list() == [] and not (tmp_path / "state" / "agentseat.env").exists()


async def test_setup_creates_every_object_from_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = seat_settings(sandbox, state, agent_display_name="fresh agent", agent_user_upn="")
    out = await run_setup(settings, license_sku="SPE_E3")
    assert "applied 10 change(s)" in out
    config = read_env_file(state / "agentseat.env")
    tenant = sandbox.tenant
    blueprint = tenant.apps[config["AGENTSEAT_BLUEPRINT_APP_ID"]]
    identity = tenant.apps[config["AGENTSEAT_AGENT_ID"]]
    user = tenant.users[config["AGENTSEAT_AGENT_USER_ID"]]
    assert blueprint.kind == "blueprint" and blueprint.has_principal and blueprint.display_name == "fresh agent"
    assert blueprint.object_id == config["AGENTSEAT_BLUEPRINT_OBJECT_ID"]
    assert identity.kind == "agentIdentity" and identity.blueprint_app_id == blueprint.app_id
    assert identity.sponsors == [sandbox.role("sponsor")]
    assert user.kind == "agentUser" and user.upn == "fresh-agent@contoso.test"
    assert user.identity_parent_id == identity.app_id
    assert user.licenses == [TEAMS_SKU_ID] and user.usage_location == "US"
    assert (await me(configured(sandbox, state)))["userPrincipalName"] == "fresh-agent@contoso.test"
    assert (await run_setup(settings, license_sku="SPE_E3")).rstrip().endswith("no changes")


async def test_setup_appends_and_an_existing_credential_survives(sandbox: Sandbox, tmp_path: Path) -> None:
    key_pem, other_sha1, _ = register_agent_cert(sandbox)  # another machine's certificate
    settings = seat_settings(sandbox, tmp_path / "state")
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(settings)
    ours = KeyStore(settings).active()
    assert ours is not None and blueprint_sha1s(sandbox) == {other_sha1, ours}
    # Without a registered key of ours there is no proof for addKey: PATCH sent the old entry back.
    assert writes(sandbox).get(f"PATCH {TYPED}") == 1
    assert "access_token" in hop1(sandbox, key_pem, other_sha1), "the other machine's certificate stopped working"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure("debug", "console", stream=buffer)
    yield buffer
    configure("debug")


async def test_rotation_keeps_the_old_certificate_valid_until_retired(
        sandbox: Sandbox, tmp_path: Path, logs: io.StringIO) -> None:
    state = tmp_path / "state"
    settings = seat_settings(sandbox, state)
    await run_setup(settings)
    store = KeyStore(settings)
    old = store.active()
    assert old is not None
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(settings, rotate_key=True)
    new = store.active()
    assert new not in (None, old) and blueprint_sha1s(sandbox) == {old, new}
    assert writes(sandbox) == {f"POST {TYPED}/addKey": 1}, "rotation must append with addKey"
    assert read_env_file(state / "agentseat.env")["AGENTSEAT_CERT_THUMBPRINT"] == new
    config = configured(sandbox, state)
    assert await hop1_with(config, old) and await hop1_with(config, new)  # both sign in until retirement
    old_credential = store.load_pem_credential(old)
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(settings, retire_old=True)
    assert writes(sandbox) == {f"POST {TYPED}/removeKey": 1}
    assert blueprint_sha1s(sandbox) == {new} and [c.sha1 for c in store.list()] == [new]
    with pytest.raises(KeyStoreError):
        store.load(old)
    retired = TokenChain(config, lambda: old_credential)
    with pytest.raises(TokenError) as caught:
        await anyio.to_thread.run_sync(retired.hop1)
    assert caught.value.hop == "hop1:blueprint" and caught.value.code == "AADSTS700027"
    assert (await me(config))["id"] == sandbox.role("agent_user")
    text = logs.getvalue()  # setup, addKey proofs, removeKey, sign-ins: none of it leaks
    assert "certificate_registered" in text and not re.search(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+", text)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", text) and PASSPHRASE not in text


async def test_the_provisioner_key_must_be_private(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state")
    assert settings.provisioner_key_path is not None
    leaky = tmp_path / "provisioner.key.pem"
    leaky.write_bytes(Path(settings.provisioner_key_path).read_bytes())
    leaky.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        await run_setup(settings.model_copy(update={"provisioner_key_path": leaky}))
    assert "mode 0644" in caught.value.message and caught.value.hint == f"chmod 600 {leaky}"


async def test_consent_is_merged_into_an_existing_grant(sandbox: Sandbox, tmp_path: Path) -> None:
    grant = grant_agent_consent(sandbox, ("User.Read", "Files.Read"))
    control(sandbox, "DELETE", "/_sandbox/stats")
    out = await run_setup(seat_settings(sandbox, tmp_path / "state"))
    assert "add delegated scopes User.ReadBasic.All Chat.Create" in out
    assert set(sandbox.tenant.grants[grant.id].scope.split()) == {*AGENT_SCOPES, "Files.Read"}
    assert len(sandbox.tenant.grants) == 1
    assert writes(sandbox).get("PATCH /oauth2PermissionGrants/{grant_id}") == 1


async def test_grant_only_reapplies_permissions_and_nothing_else(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state")
    await run_setup(settings)
    sandbox.portal.call(sandbox.tenant.grants.clear)  # type: ignore[attr-defined]
    control(sandbox, "DELETE", "/_sandbox/stats")
    out = await run_setup(settings, grant_only=True)
    assert "applied 1 change(s)" in out and "certificate" not in out
    assert writes(sandbox) == {"POST /oauth2PermissionGrants": 1}
    identity = sandbox.role("agent_identity")
    assert sandbox.tenant.granted_scopes(identity, sandbox.role("agent_user")) == set(AGENT_SCOPES)


async def test_setup_refuses_to_create_a_blueprint_without_a_sponsor(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", agent_display_name="orphan", sponsors=[],
                             agent_user_upn="")
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(ProvisionError) as caught:
        await run_setup(settings)
    assert "sponsor" in caught.value.message and "AGENTSEAT_SPONSORS" in (caught.value.hint or "")
    assert writes(sandbox) == {}


async def test_setup_refuses_a_user_name_taken_by_someone_else(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", agent_display_name="copycat",
                             agent_user_upn="grace@contoso.test")
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(ProvisionError) as caught:
        await run_setup(settings)
    assert "grace@contoso.test is taken" in caught.value.message
    assert writes(sandbox) == {}


async def test_teardown_needs_yes_then_removes_everything_once(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = seat_settings(sandbox, state, agent_display_name="short-lived", agent_user_upn="")
    await run_setup(settings)
    (state / "agentseat.env").write_text((state / "agentseat.env").read_text() + "UNRELATED=stays\n")
    config = configured(sandbox, state, agent_display_name="short-lived")
    ids = read_env_file(state / "agentseat.env")
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(ProvisionError) as caught:
        await teardown(config, out=io.StringIO(), err=io.StringIO())
    assert "--yes" in (caught.value.hint or "")
    out = io.StringIO()
    await teardown(config, dry_run=True, out=out, err=io.StringIO())
    assert "- delete the Agent User short-lived@contoso.test" in out.getvalue()
    assert writes(sandbox) == {}, "teardown changed something without --yes"
    out = io.StringIO()
    await teardown(config, yes=True, out=out, err=io.StringIO())
    assert "applied 7 change(s)" in out.getvalue()
    tenant = sandbox.tenant
    assert ids["AGENTSEAT_BLUEPRINT_APP_ID"] not in tenant.apps and ids["AGENTSEAT_AGENT_ID"] not in tenant.apps
    assert ids["AGENTSEAT_AGENT_USER_ID"] not in tenant.users
    assert not [g for g in tenant.grants.values() if g.client_app_id == ids["AGENTSEAT_AGENT_ID"]]
    assert KeyStore(config).list() == [] and not list((state / "keys").glob("*.key.pem"))
    remaining = read_env_file(state / "agentseat.env")
    assert remaining["UNRELATED"] == "stays" and "AGENTSEAT_AGENT_ID" not in remaining
    assert sandbox.role("agent_user") in tenant.users, "the demo's own agent was touched"
    out = io.StringIO()
    await teardown(config, yes=True, out=out, err=io.StringIO())
    assert out.getvalue().rstrip().endswith("no changes")


async def test_a_missing_sponsor_is_added_to_the_agent_identity(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", sponsors=["ada@contoso.test", "grace@contoso.test"])
    control(sandbox, "DELETE", "/_sandbox/stats")
    out = await run_setup(settings)
    assert "+ add sponsor grace@contoso.test to the Agent Identity" in out and "sponsor ada" not in out
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    assert identity.sponsors == [sandbox.role("sponsor"), sandbox.role("colleague1")]
    assert writes(sandbox).get("POST /servicePrincipals/{sp_id}/microsoft.graph.agentIdentity/sponsors/$ref") == 1
