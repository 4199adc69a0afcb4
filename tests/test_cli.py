"""The identity commands of the `agentseat` CLI, run in-process against the sandbox.

Each test starts from nothing: a fresh state directory and the sandbox's `sandbox.env` passed
with `--env-file`, exactly as a user would. `main()` runs its own event loop, so these tests are
synchronous; the sandbox serves from its own thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentseat.cli import main
from agentseat.config import Settings
from agentseat.identity.configfile import update_env_file
from agentseat.identity.keys import KeyStore, generate_certificate
from agentseat.runtime.inbox import Event, Inbox
from agentseat.sandbox.app import Sandbox
from agentseat.tenant_facts import FACTS_FILE, TenantFacts
from tests.sandbox._agent import add_key_credential

_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    # No keyring in tests (conftest): the key's passphrase comes from the environment.
    monkeypatch.setenv("AGENTSEAT_KEY_PASSPHRASE", "cli-test-passphrase")


def run(sandbox: Sandbox, state: Path, *argv: str) -> int:
    return main(["--env-file", str(sandbox.env_path), "--state-dir", str(state), *argv])


def test_setup_then_doctor_pass_from_nothing_and_a_second_setup_changes_nothing(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "fresh"
    assert run(sandbox, state, "setup") == 0
    out = capsys.readouterr().out
    assert "agentseat setup: tenant" in out and "applied 4 change(s)" in out
    # The sandbox names an event hub: setup cannot grant Azure roles, so it prints them with the new ids.
    assert "setup cannot grant Azure roles" in out
    receiver = next(line for line in out.splitlines() if "Azure Event Hubs Data Receiver" in line)
    assert "<agent-user-object-id>" not in receiver and "--assignee-principal-type User" in receiver
    assert "0bf30f3b-4a52-48df-9a82-234910c4a086" in out  # Graph's Change Tracking app sends
    assert run(sandbox, state, "doctor") == 0
    out = capsys.readouterr().out
    for name in ("settings", "key", "certificate", "hop 1", "hop 2", "hop 3", "graph", "scopes"):
        assert re.search(rf"^✓ {name}: ", out, re.M), f"{name} did not pass:\n{out}"
    assert out.rstrip().endswith("all checks passed")
    assert run(sandbox, state, "setup") == 0
    out = capsys.readouterr().out
    assert "\nno changes\n" in out and "\n  + " not in out


def test_setup_dry_run_prints_the_plan_on_stdout_and_changes_nothing(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "setup", "--dry-run") == 0
    captured = capsys.readouterr()
    assert "+ generate a certificate" in captured.out and "nothing changed" in captured.out
    assert "→" not in captured.err  # no step ran
    assert not (state / "agentseat.env").exists() and not list(state.glob("keys/*.pem"))
    assert sandbox.tenant.apps[sandbox.role("blueprint")].key_credentials == []


def test_doctor_names_the_failing_hop_when_the_certificate_is_revoked(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "setup") == 0
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")]
    sandbox.portal.call(blueprint.key_credentials.clear)  # type: ignore[attr-defined]
    capsys.readouterr()
    assert run(sandbox, state, "doctor") == 1
    out = capsys.readouterr().out
    assert re.search(r"^✗ hop 1: hop1:blueprint failed: .*AADSTS700027", out, re.M), out
    assert "fix: the certificate is not registered on the Blueprint" in out
    assert re.search(r"^– hop 2: needs hop 1", out, re.M) and re.search(r"^– graph: ", out, re.M)
    assert "1 check(s) failed: hop 1" in out


def test_doctor_warns_about_a_certificate_that_expires_within_30_days(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "setup") == 0
    store = KeyStore(Settings(_env_file=None, state_dir=state, key_passphrase="cli-test-passphrase"))  # type: ignore[call-arg]
    short = generate_certificate("short-lived", days=10)
    store.add(short)
    add_key_credential(sandbox, sandbox.role("blueprint"), short.certificate.public_bytes(_der()))
    store.set_active(short.sha1_thumbprint)
    update_env_file(state / "agentseat.env", {"AGENTSEAT_CERT_THUMBPRINT": short.sha1_thumbprint})
    capsys.readouterr()
    assert run(sandbox, state, "doctor") == 0  # a warning is not a failure
    out = capsys.readouterr().out
    assert re.search(r"^! certificate: expires on \S+, in 9 days", out, re.M), out
    assert "fix: run `agentseat setup --rotate-key`" in out and re.search(r"^✓ hop 1: ", out, re.M)


def _der():  # noqa: ANN202
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_doctor_without_setup_says_what_is_missing(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sandbox, tmp_path / "empty", "doctor") == 1
    out = capsys.readouterr().out
    assert re.search(r"^✗ settings: missing AGENTSEAT_BLUEPRINT_APP_ID", out, re.M)
    assert "fix: run `agentseat setup`" in out and re.search(r"^✗ key: no active certificate", out, re.M)


def test_token_prints_the_access_token_and_decode_prints_its_claims(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "setup") == 0
    capsys.readouterr()
    assert run(sandbox, state, "token") == 0
    token = capsys.readouterr().out.strip()
    assert _JWT.match(token)
    assert run(sandbox, state, "token", "--decode") == 0
    decoded = json.loads(capsys.readouterr().out)
    assert set(decoded) == {"header", "claims"} and decoded["header"]["alg"] == "RS256"
    assert decoded["claims"]["idtyp"] == "user" and decoded["claims"]["oid"] == sandbox.role("agent_user")
    assert run(sandbox, state, "token", "--resource", "exchange", "--decode") == 0
    assert json.loads(capsys.readouterr().out)["claims"]["aud"] == "api://AzureADTokenExchange"


def test_token_before_setup_fails_with_a_hint(sandbox: Sandbox, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sandbox, tmp_path / "empty", "token") == 78
    captured = capsys.readouterr()
    assert captured.out == "" and "hint: run `agentseat setup`" in captured.err


def test_teardown_refuses_without_yes_then_removes_the_agent(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "setup") == 0
    capsys.readouterr()
    assert run(sandbox, state, "teardown") == 1
    captured = capsys.readouterr()
    assert "- delete the Agent User agent@contoso.test" in captured.out and "hint: re-run with --yes" in captured.err
    assert sandbox.role("agent_user") in sandbox.tenant.users
    assert run(sandbox, state, "teardown", "--yes") == 0
    assert "applied" in capsys.readouterr().out
    assert sandbox.role("blueprint") not in sandbox.tenant.apps
    assert run(sandbox, state, "teardown", "--yes") == 0
    assert capsys.readouterr().out.rstrip().endswith("no changes")


def test_status_reads_the_inbox_and_subscriptions_without_a_runtime(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert run(sandbox, state, "status") == 0
    assert "inbox:          empty" in capsys.readouterr().out
    inbox = Inbox(state / "inbox.db")
    when = "2026-01-01T00:00:00+00:00"
    inbox.append([Event.teams(chat_id="19:chat", message_id="m1", sender_id="u1", sender_upn="ada@contoso.test",
                              sender_name="Ada", trust="sponsor", text="secret plans", created_at=when,
                              source="webhook"),
                  Event.mail(message_id="m2", sender_id="u2", sender_upn="grace@contoso.test", sender_name="Grace",
                             trust="colleague", text="hello", subject="hi", created_at=when, source="poll")])
    inbox.set_meta("subscriptions", json.dumps({
        "teams": {"kind": "teams", "id": "sub-1", "expires": 4_102_444_800.0, "url": "https://x", "state": "active",
                  "error": ""},
        "mail": {"kind": "mail", "id": "", "expires": 0.0, "url": "", "state": "refused",
                 "error": "Graph refused the subscription (403 Forbidden)"}}))
    inbox.close()
    assert run(sandbox, state, "status") == 0
    out = capsys.readouterr().out
    assert "inbox:          2 events (1 teams, 1 mail)" in out
    assert "last event:     #2 mail from grace@contoso.test (colleague, via poll)" in out
    assert "subscription:   teams: active, expires 2100-01-01" in out
    assert "subscription:   mail: refused" in out and "403 Forbidden" in out
    assert "runtime:        not running" in out
    assert "secret plans" not in out and "hello" not in out  # never a message's text


def test_status_shows_what_the_tenant_was_seen_to_do_and_its_warnings(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    writer = TenantFacts(state)  # as a running runtime in another process would
    writer.record("chats_orderby", "rejected")
    writer.record("validation_tokens", {"audience": "blueprint", "verified": True})
    writer.warn("webhook_delivery", "reconcile found 3 messages no notification delivered")
    assert run(sandbox, state, "status") == 0
    out = capsys.readouterr().out
    assert "tenant:         chats_orderby = rejected" in out
    assert 'tenant:         validation_tokens = {"audience": "blueprint", "verified": true}' in out
    assert "warning:        reconcile found 3 messages no notification delivered [webhook_delivery" in out
    writer.warn("webhook_delivery", None)
    assert TenantFacts.read(state)["warnings"] == {}
    assert oct((state / FACTS_FILE).stat().st_mode & 0o777) == "0o600"
    (state / FACTS_FILE).write_text("{not json")  # a damaged file is a logged restart, never a crash
    assert run(sandbox, state, "status") == 0
    assert "tenant:" not in capsys.readouterr().out
