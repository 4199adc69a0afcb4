"""`agentseat setup` against what real tenants do (issue 11): replication delays, Blueprint-only key
routes, and machines where a precondition is missing. All against the real sandbox; changes are
proved on its side (request counters, tenant objects) and by signing in.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentseat.config import Settings
from agentseat.errors import KeyStoreError, ProvisionError
from agentseat.identity.provision import SetupOptions, setup
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.tenant_facts import TenantFacts
from tests.identity.test_provision import PASSPHRASE, TYPED, configured, control, me, run_setup, seat_settings, writes
from tests.runtime.test_runtime import control as post_control


def _behaviour(**values: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour=values)])


def _cli(sandbox: Sandbox, state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`agentseat` as a user runs it on a headless machine: no keyring, the passphrase from the environment."""
    env = {**os.environ, "AGENTSEAT_KEY_PASSPHRASE": PASSPHRASE,
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    return subprocess.run([sys.executable, "-m", "agentseat.cli", "--env-file", str(sandbox.env_path),
                           "--state-dir", str(state), *argv], env=env, capture_output=True, text=True, timeout=120)


@_behaviour(replication_delay_seconds=3)
async def test_setup_waits_out_replication_with_progress_and_records_how_long(sandbox: Sandbox, tmp_path: Path) -> None:
    state, err = tmp_path / "state", io.StringIO()
    assert await setup(seat_settings(sandbox, state), SetupOptions(), out=io.StringIO(), err=err) == 0
    progress = err.getvalue()
    assert re.search(r"waiting for the new key to reach the token endpoint… \d+ s / 180 s", progress), progress
    assert "✓ the agent signs in and reaches Graph" in progress
    # The runtime's first calls work at once: setup did not return before the tenant had caught up.
    assert (await me(configured(sandbox, state)))["id"] == sandbox.role("agent_user")
    assert TenantFacts(state).get("replication_wait_seconds") >= 1


@_behaviour(replication_delay_seconds=3)
async def test_setup_from_nothing_waits_for_each_new_object_it_names_next(sandbox: Sandbox, tmp_path: Path) -> None:
    state, err = tmp_path / "state", io.StringIO()
    settings = seat_settings(sandbox, state, agent_display_name="slow tenant agent", agent_user_upn="")
    out = io.StringIO()
    assert await setup(settings, SetupOptions(license_sku="SPE_E3"), out=out, err=err) == 0
    assert "applied 10 change(s)" in out.getvalue()
    # The app role names the new Agent Identity in its path: Graph answers 404 until it replicates.
    assert "waiting for Graph to know the objects just created…" in err.getvalue()
    assert (await me(configured(sandbox, state)))["userPrincipalName"] == "slow-tenant-agent@contoso.test"


@_behaviour(replication_delay_seconds=600)
async def test_a_step_that_outwaits_the_budget_stops_with_a_resumable_error(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = seat_settings(sandbox, state, agent_display_name="stalled agent", agent_user_upn="")
    with pytest.raises(ProvisionError) as caught:
        await setup(settings, SetupOptions(wait_seconds=3), out=io.StringIO(), err=io.StringIO())
    assert "Graph still does not know an object created moments ago (HTTP 404" in caught.value.message
    assert "run `agentseat setup` again" in (caught.value.hint or "")
    await post_control(sandbox, "POST", "/_sandbox/behaviour", {"replication_delay_seconds": 0})
    out = await run_setup(settings)
    assert "✓ Agent Identity Blueprint 'stalled agent' exists" in out, "the re-run goes on from what was made"
    assert [a.display_name for a in sandbox.tenant.apps.values()].count("stalled agent") == 2  # Blueprint, identity


@_behaviour(replication_delay_seconds=600)
async def test_setup_gives_up_after_wait_saying_what_is_missing_and_a_rerun_resumes(
        sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = _cli(sandbox, state, "setup", "--wait", "3")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "applied 4 change(s)" in run.stdout
    assert re.search(r"waiting for the new key to reach the token endpoint… \d+ s / 3 s", run.stderr), run.stderr
    assert "still missing: the new key to reach the token endpoint" in run.stderr
    assert "run `agentseat setup` again" in run.stderr
    assert "still missing" in _cli(sandbox, state, "status").stdout  # status carries the warning meanwhile
    await post_control(sandbox, "POST", "/_sandbox/behaviour", {"replication_delay_seconds": 0})
    rerun = _cli(sandbox, state, "setup")
    assert rerun.returncode == 0, rerun.stderr
    assert "\nno changes\n" in rerun.stdout and "✓ the agent signs in" in rerun.stderr
    assert "still missing" not in _cli(sandbox, state, "status").stdout


@_behaviour(blueprint_key_route="blueprint_only")
async def test_a_blueprint_only_tenant_gets_keys_written_rotated_and_retired_on_the_typed_routes(
        sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = seat_settings(sandbox, state)
    await run_setup(settings)
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(settings, rotate_key=True)
    assert writes(sandbox) == {f"POST {TYPED}/addKey": 1}
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(settings, retire_old=True)
    assert writes(sandbox) == {f"POST {TYPED}/removeKey": 1}
    assert TenantFacts(state).get("blueprint_key_route") == "blueprint"
    assert (await me(configured(sandbox, state)))["id"] == sandbox.role("agent_user")


async def test_a_provisioner_refused_on_the_typed_route_falls_back_to_the_generic_one(
        sandbox: Sandbox, tmp_path: Path) -> None:
    provisioner = sandbox.tenant.apps[sandbox.role("provisioner")]
    # Application.ReadWrite.All alone: the typed routes need AgentIdentityBlueprint.* (agentidentityblueprint-update).
    sandbox.portal.call(provisioner.roles.remove, "AgentIdentityBlueprint.ReadWrite.All")  # type: ignore[attr-defined]
    state = tmp_path / "state"
    control(sandbox, "DELETE", "/_sandbox/stats")
    await run_setup(seat_settings(sandbox, state))
    assert writes(sandbox).get(f"PATCH {TYPED}") == 1 and writes(sandbox).get("PATCH /applications/{object_id}") == 1
    assert TenantFacts(state).get("blueprint_key_route") == "generic"
    assert (await me(configured(sandbox, state)))["id"] == sandbox.role("agent_user")


async def test_a_headless_machine_without_a_passphrase_is_refused_before_any_grant(
        sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", key_passphrase=None)  # and no keyring (conftest)
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(KeyStoreError) as caught:
        await run_setup(settings)
    assert "AGENTSEAT_KEY_PASSPHRASE" in caught.value.message
    assert "AGENTSEAT_KEY_PASSPHRASE" in (caught.value.hint or "")
    assert writes(sandbox) == {}
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    assert not [g for g in sandbox.tenant.grants.values() if g.client_app_id == identity.app_id]
    assert "Application.Read.All" not in identity.roles


async def test_setup_lists_every_problem_at_once_and_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = seat_settings(sandbox, tmp_path / "state", key_passphrase=None, sponsors=["nobody@contoso.test"],
                             agent_display_name="another agent", agent_user_upn="grace@contoso.test")
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(ProvisionError) as caught:
        await run_setup(settings)
    message = caught.value.message
    assert message.startswith("setup changed nothing: 3 problems to fix first"), message
    assert "AGENTSEAT_KEY_PASSPHRASE" in message and "'nobody@contoso.test' is not a user" in message
    assert "grace@contoso.test is taken" in message
    assert writes(sandbox) == {}


async def test_a_provisioner_missing_a_permission_is_refused_before_any_change(
        sandbox: Sandbox, tmp_path: Path) -> None:
    provisioner = sandbox.tenant.apps[sandbox.role("provisioner")]
    sandbox.portal.call(provisioner.roles.remove, "AppRoleAssignment.ReadWrite.All")  # type: ignore[attr-defined]
    control(sandbox, "DELETE", "/_sandbox/stats")
    with pytest.raises(ProvisionError) as caught:
        await run_setup(seat_settings(sandbox, tmp_path / "state"))
    assert "may not grant the Agent Identity the app role Application.Read.All" in caught.value.message
    assert "AppRoleAssignment.ReadWrite.All" in (caught.value.hint or "")
    assert writes(sandbox) == {}


async def test_without_provisioner_settings_the_local_problems_are_listed_too(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state",  # type: ignore[call-arg]
                        tenant_id="", key_passphrase=None)
    with pytest.raises(ProvisionError) as caught:
        await run_setup(settings)
    message = caught.value.message
    assert message.startswith("setup changed nothing: 2 problems to fix first"), message
    assert "provisioning needs AGENTSEAT_TENANT_ID" in message and "AGENTSEAT_KEY_PASSPHRASE" in message
