"""Shared fixtures: a fresh sandbox tenant per test, served over real loopback HTTPS.

The sandbox runs on its own event loop in a worker thread (an anyio blocking
portal), as a separate server would: tests reach it only through sockets,
except for reading its state to assert on it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.pki import SandboxPki

configure("debug")
# Tests never touch a developer's real keyring: key passphrases come from settings.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"


@pytest.fixture(scope="session")
def _pki_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Generating a CA, a server key and a signing key costs ~0.2 s; do it once.
    directory = tmp_path_factory.mktemp("pki-template") / "pki"
    SandboxPki(directory)
    return directory


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    """Override in a test module to change emulator knobs."""
    return SandboxOptions()


@pytest.fixture
def sandbox(tmp_path: Path, _pki_template: Path, sandbox_options: SandboxOptions) -> Iterator[Sandbox]:
    state = tmp_path / "sandbox"
    state.mkdir(mode=0o700)
    shutil.copytree(_pki_template, state / "pki")
    sb = Sandbox(state, sandbox_options)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(sb.running()):
        sb.portal = portal  # type: ignore[attr-defined]
        yield sb


def provision_agent(sandbox: Sandbox, state_dir: Path, **overrides: object) -> dict[str, str]:
    """A working agent on `sandbox` without `agentseat setup`: its key in a KeyStore under
    `state_dir`, its certificate appended to the Blueprint, and delegated consent.

    Returns the AGENTSEAT_* environment a runtime (or a subprocess) needs.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from agentseat.identity.keys import KeyStore, generate_certificate
    from agentseat.sandbox.agent import register_agent

    cert = generate_certificate("agentseat test agent")
    env = sandbox.portal.call(register_agent, sandbox, cert.certificate.public_bytes(Encoding.DER))  # type: ignore[attr-defined]
    env |= {
        "AGENTSEAT_STATE_DIR": str(state_dir),
        "AGENTSEAT_CONFIG_FILE": str(state_dir / "agentseat.env"),
        "AGENTSEAT_KEY_PASSPHRASE": "test-passphrase-not-secret",
        "AGENTSEAT_TUNNEL": "loopback",
        "AGENTSEAT_LOG_LEVEL": "debug",
        # Tests of other parts post as colleagues and expect them through: today's `tenant` rule.
        # The access tests (tests/access/) set the policy they test, `pairing` (the default) first.
        "AGENTSEAT_INBOUND_POLICY": "tenant",
    }
    # `auto` prefers a configured event hub (runtime/transport_choice.py): tests that want the sandbox's
    # hub name it themselves (tests/eventhub/), the others run auto as webhooks or polling.
    env = {k: v for k, v in env.items() if not k.startswith("AGENTSEAT_EVENTHUB_")}
    env |= {f"AGENTSEAT_{k.upper()}": str(v) for k, v in overrides.items()}
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    KeyStore(settings_from_env(env)).add(cert)
    return env


def settings_from_env(env: dict[str, str]):  # noqa: ANN201
    from agentseat.config import Settings

    return Settings(_env_file=None, **{k[len("AGENTSEAT_"):].lower(): v for k, v in env.items()})  # type: ignore[arg-type]


@pytest.fixture
def agent_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """The AGENTSEAT_* environment of a provisioned agent on this test's sandbox."""
    return provision_agent(sandbox, tmp_path / "agent")


@pytest.fixture
def agent_settings(agent_env: dict[str, str]):  # noqa: ANN201
    return settings_from_env(agent_env)
