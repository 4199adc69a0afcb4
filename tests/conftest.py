"""Shared fixtures: a fresh sandbox tenant per test, served over real loopback HTTPS.

The sandbox runs on its own event loop in a worker thread (an anyio blocking
portal), as a separate server would: tests reach it only through sockets,
except for reading its state to assert on it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.pki import SandboxPki

configure("debug")


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
