"""`agentseat doctor --live`: it reports what the tenant does, under each sandbox variant.

Each test runs the real commands as a user would (`agentseat setup`, then `doctor --live`,
subprocesses against the sandbox), and checks both the printed finding and the tenant fact
it records, which `agentseat status` shows.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentseat.identity.doctor_report import scrub
from agentseat.identity.provision_graph import REQUIRED_SCOPES
from agentseat.runtime.inbox import Inbox
from agentseat.sandbox.app import Sandbox, SandboxOptions
from tests.agent_process import cli_env, run_cli, start_watch, stop, stored
from tests.runtime.test_runtime import control, upn, wait_for

PASSPHRASE = "doctor-live-passphrase-not-secret"
LOOPBACK = {"AGENTSEAT_TUNNEL": "loopback"}


@pytest.fixture
def behaviour() -> dict[str, Any]:
    return {}


@pytest.fixture
def sandbox_options(behaviour: dict[str, Any]) -> SandboxOptions:
    return SandboxOptions(behaviour=behaviour)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return cli_env(PASSPHRASE, extra)


def _cli(sandbox: Sandbox, state: Path, *argv: str, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(sandbox, state, *argv, env=_env(env), timeout=timeout)


def _set_up(sandbox: Sandbox, tmp_path: Path) -> Path:
    state = tmp_path / "agent"
    setup = _cli(sandbox, state, "setup")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return state


def _line(output: str, name: str) -> str:
    """The finding line for `name` (e.g. "mailbox"), without its mark."""
    for line in output.splitlines():
        if re.match(rf"^[✓!–] {re.escape(name)}: ", line):
            return line[2:]
    raise AssertionError(f"no finding {name!r} in:\n{output}")


def _live(sandbox: Sandbox, state: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    run = _cli(sandbox, state, "doctor", "--live", *argv, env=LOOPBACK | (env or {}))
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _status(sandbox: Sandbox, state: Path) -> str:
    run = _cli(sandbox, state, "status")
    assert run.returncode == 0, run.stderr
    return run.stdout


#: behaviour -> (finding name -> text its line must contain), (lines `status` must then show)
VARIANTS: dict[str, Any] = {
    "documented_defaults": pytest.param(
        {}, {"chat subscription lifetime": "at most 4320 minutes", "$orderby on /me/chats": "supported",
             "mailbox": "ready", "teams": "ready", "granted scopes": f"all {len(REQUIRED_SCOPES)} that agentseat needs", "validation tokens": "none seen yet"},
        ("chat_subscription_max_minutes = 4320", "chats_orderby = supported", "mailbox = ready", "teams = ready"),
        id="documented_defaults"),
    "chat_subscriptions_last_an_hour": pytest.param(
        {"chat_subscription_max_minutes": 60}, {"chat subscription lifetime": "at most 60 minutes"},
        ("chat_subscription_max_minutes = 60",), id="chat_subscriptions_last_an_hour"),
    "orderby_rejected": pytest.param(
        {"chats_orderby": "rejected"}, {"$orderby on /me/chats": "rejected (400", "teams": "ready"},
        ("chats_orderby = rejected",), id="orderby_rejected"),
    "mailbox_not_ready": pytest.param(
        {"mailbox_ready_after_seconds": 3600},
        {"mailbox": "not ready: GET /me/mailFolders/inbox/messages answers 404 MailboxNotEnabledForRESTAPI",
         "teams": "not ready: GET /me/chats answers 403"},
        ("mailbox = not_ready", "teams = not_ready"), id="mailbox_not_ready"),
    "blueprint_key_routes_only": pytest.param(
        {"blueprint_key_route": "blueprint_only"}, {"blueprint key route": "blueprint: "},
        (), id="blueprint_key_routes_only"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("behaviour", "expected", "recorded"), VARIANTS.values())
def test_live_doctor_reports_the_variant_and_records_it(sandbox: Sandbox, tmp_path: Path, expected: dict[str, str],
                                                         recorded: tuple[str, ...]) -> None:
    state = _set_up(sandbox, tmp_path)
    output = _live(sandbox, state)
    for name, text in expected.items():
        assert text in _line(output, name), f"{name}: expected {text!r}:\n{output}"
    status = _status(sandbox, state)
    for line in recorded:
        assert line in status, f"`agentseat status` does not say {line!r}:\n{status}"


@pytest.mark.parametrize("behaviour", [{"chat_subscription_max_minutes": 20_000}])
def test_a_lifetime_graph_accepts_is_recorded_and_the_probe_subscription_deleted(sandbox: Sandbox,
                                                                                   tmp_path: Path) -> None:
    """Graph accepted: doctor answered the validation handshake itself, and left nothing behind."""
    state = _set_up(sandbox, tmp_path)
    output = _live(sandbox, state)
    line = _line(output, "chat subscription lifetime")
    assert "at least 10080 minutes: Graph accepted" in line and "deleted again" in line, output
    assert sandbox.tenant.subscriptions == {}
    assert "chat_subscription_max_minutes = 10080" in _status(sandbox, state)


def test_without_a_public_url_the_lifetime_probe_is_skipped_and_the_others_run(sandbox: Sandbox,
                                                                                 tmp_path: Path) -> None:
    state = _set_up(sandbox, tmp_path)
    output = _live(sandbox, state, env={"AGENTSEAT_TUNNEL": "ngrok"})
    assert _line(output, "chat subscription lifetime").startswith(
        "chat subscription lifetime: skipped: no public URL: the ngrok tunnel runs only with the runtime"), output
    assert "ready" in _line(output, "mailbox")
    assert "chat_subscription_max_minutes" not in _status(sandbox, state)


def test_missing_configuration_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    run = _cli(sandbox, tmp_path / "never-set-up", "doctor", "--live", env=LOOPBACK)
    assert run.returncode == 78, run.stdout + run.stderr
    assert "doctor --live needs the agent's configuration; missing AGENTSEAT_" in run.stderr
    assert run.stdout == ""


def test_without_a_token_it_fails_clearly_and_still_writes_the_report(sandbox: Sandbox, tmp_path: Path) -> None:
    state = _set_up(sandbox, tmp_path)
    report = tmp_path / "report.json"
    run = _cli(sandbox, state, "doctor", "--live", "--report", str(report),
               env=LOOPBACK | {"AGENTSEAT_KEY_PASSPHRASE": "not-the-passphrase"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "no delegated Graph token, so the live probes did not run" in run.stderr
    assert "✗ key: " in run.stdout and "live probes of tenant" not in run.stdout
    data = json.loads(report.read_text())
    assert data["findings"] == [] and any(c["name"] == "key" and c["status"] == "fail" for c in data["checks"])
    assert "not-the-passphrase" not in report.read_text()


def test_report_needs_live(sandbox: Sandbox, tmp_path: Path) -> None:
    run = _cli(sandbox, tmp_path / "agent", "doctor", "--report", str(tmp_path / "r.json"))
    assert run.returncode != 0 and "--report goes with --live" in run.stderr
    assert not (tmp_path / "r.json").exists()


# --- what the runtime saw, and the report -------------------------------------------------------
def _watch(sandbox: Sandbox, state: Path, log: Path) -> subprocess.Popen[bytes]:
    return start_watch(sandbox, state, log, _env(LOOPBACK | {"AGENTSEAT_MODE": "webhook",
                                                             "AGENTSEAT_INBOUND_POLICY": "tenant"}))


async def _dm_through_webhook(sandbox: Sandbox, state: Path, tmp_path: Path, text: str) -> dict[str, Any]:
    """Run the runtime in webhook mode until a sponsor's DM is stored; returns its subscriptions."""
    log = tmp_path / "watch.log"
    proc = _watch(sandbox, state, log)
    try:
        await wait_for(lambda: "kind=teams reason=startup" in log.read_text(errors="replace"), timeout=120)
        dm = await control(sandbox, "POST", "/_sandbox/messages", {
            "from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": text})
        await wait_for(lambda: dm["message_id"] in stored(state), timeout=120)
    finally:
        stop(proc)
    with Inbox(state / "inbox.db") as inbox:
        return json.loads(inbox.get_meta("subscriptions") or "{}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("behaviour", "audience"), [
    pytest.param({}, "agent_identity", id="agent_identity"),
    pytest.param({"validation_token_audience": "blueprint"}, "blueprint", id="blueprint"),
    pytest.param({"validation_token_audience": "none"}, "missing", id="none"),
])
async def test_live_doctor_shows_the_validation_token_claims_the_runtime_saw(
        sandbox: Sandbox, tmp_path: Path, audience: str) -> None:
    state = _set_up(sandbox, tmp_path)
    await _dm_through_webhook(sandbox, state, tmp_path, "hello")
    line = _line(_live(sandbox, state), "validation tokens")
    assert line.startswith(f"validation tokens: audience {audience}"), line


@pytest.mark.timeout(300)
async def test_report_is_private_json_without_secrets_or_message_text(sandbox: Sandbox, tmp_path: Path) -> None:
    state = _set_up(sandbox, tmp_path)
    marker = f"marker-{uuid.uuid4().hex}"
    subscriptions = await _dm_through_webhook(sandbox, state, tmp_path, f"the figures are {marker}")
    client_states = [s["client_state"] for s in subscriptions.values() if s.get("client_state")]
    assert client_states  # the runtime held secrets the report could have leaked
    report = tmp_path / "report.json"
    report.write_text("an older report")
    report.chmod(0o644)
    output = _live(sandbox, state, "--report", str(report))
    assert f"report written to {report}" in output
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text()
    data = json.loads(text)
    assert {"versions", "settings", "checks", "findings", "facts", "warnings"} <= set(data)
    assert data["versions"]["agentseat"]
    names = {f["name"] for f in data["findings"]}
    assert {"chat subscription lifetime", "$orderby on /me/chats", "mailbox", "teams", "granted scopes",
            "validation tokens", "blueprint key route"} <= names
    assert data["facts"]["chat_subscription_max_minutes"]["value"] == 4320
    for secret in [marker, PASSPHRASE, *client_states]:
        assert secret not in text
    assert "eyJ" not in text  # no JWT: tokens, assertions
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


@pytest.mark.timeout(300)
@pytest.mark.parametrize("behaviour", [{"chat_subscription_max_minutes": 20_000}])
async def test_beside_a_running_runtime_the_probe_uses_its_url_and_leaves_its_subscriptions_alone(
        sandbox: Sandbox, tmp_path: Path) -> None:
    state = _set_up(sandbox, tmp_path)
    log = tmp_path / "watch.log"
    proc = _watch(sandbox, state, log)
    try:
        await wait_for(lambda: "kind=teams reason=startup" in log.read_text(errors="replace"), timeout=120)
        before = set(sandbox.tenant.subscriptions)
        report = tmp_path / "report.json"
        output = _live(sandbox, state, "--report", str(report))
        assert set(sandbox.tenant.subscriptions) == before  # the probe's own is gone, the runtime's stay
        assert proc.poll() is None
    finally:
        stop(proc)
    assert "deleted again" in _line(output, "chat subscription lifetime"), output
    lifetime = next(f for f in json.loads(report.read_text())["findings"] if f["name"] == "chat subscription lifetime")
    assert lifetime["public_url_source"] == "the running runtime's" and lifetime["value"] == 10080


def test_report_scrubber_drops_secret_fields_and_masks_token_like_text() -> None:
    """The report's last line of defence, for whatever a fact, warning or error may carry."""
    client_state = "Zq3" + "x7Yb-_9Kd" * 7  # the shape of `secrets.token_urlsafe(48)`
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl"
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"
    claims = {"audience": "blueprint", "aud": "3f1c2a9e-0b7d-4c55-9a1e-6d2f8b7c4e10",
              "iss": "https://login.microsoftonline.com/7d1e4f2a-5b3c-4d6e-8f90-a1b2c3d4e5f6/v2.0", "ver": "2.0"}
    data = scrub({
        "facts": {"validation_tokens": {"value": claims}},
        "warnings": {"w": {"message": f"refused with clientState {client_state} and Bearer {jwt}"}},
        "error": {"message": f"key {pem}", "hint": "thumbprint 6E2133C31FF81E2EFF9633447574706658853FF7"},
        "client_state": "short", "access_token": "opaque", "validation_token": "x", "body": "hello", "passphrase": "p",
    })
    text = json.dumps(data)
    for secret in (client_state, jwt, "MIIEvQIBADANBg", "short", "opaque", "hello"):
        assert secret not in text
    assert data["facts"]["validation_tokens"]["value"] == claims  # claims are facts, not secrets
    assert "6E2133C31FF81E2EFF9633447574706658853FF7" in text  # a thumbprint stays readable
    assert set(data) == {"facts", "warnings", "error"}
