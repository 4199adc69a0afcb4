"""Azurite, Microsoft's Storage emulator (npm), for the Blob checkpoint store tests.

Found at $AGENTSEAT_TEST_AZURITE, `<repo>/.azurite/node_modules/.bin/azurite-blob` (what
.ci/run installs with `npm install --prefix .azurite azurite@3`), or on PATH. Started per
test on a free loopback port, in memory, without telemetry (it would call Application Insights).

`azurite` serves plain HTTP (SAS and shared key). `azurite_oauth` serves HTTPS with the
sandbox's server certificate (signed by the sandbox CA, for 127.0.0.1) and `--oauth basic`,
so it takes Bearer tokens: the agent's, from the sandbox's Entra. What `basic` checks
(azurite/dist/src/blob/authentication/BlobTokenAuthenticator.js, 3.35): `nbf`, `exp` and `iat`
present and the request inside nbf..exp; `iss` starting with `https://sts.windows.net/` (or
another cloud's STS); `aud` one of `https://storage.azure.com[/]`, Storage's app id, or
`https://<account>.blob.core.windows.net[/]` for the account in the URL. It checks no signature,
and Bearer only over HTTPS. `start_azurite(tls=..., oauth=False)` is HTTPS that takes no token.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox

#: Azurite's well-known development account (documented, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_REPO = Path(__file__).resolve().parents[2]
#: What BlobTokenAuthenticator.authenticateBasic logs when a Bearer token passes.
TOKEN_ACCEPTED = "Validation against token authentication successfully"


@dataclass
class Azurite:
    account_url: str  # http://127.0.0.1:PORT/devstoreaccount1 (https:// for the TLS variants)
    ca: str | None = None  # the CA that verifies its certificate (the sandbox's), for https
    debug_log: Path | None = None  # Azurite's debug log (the TLS variants): which authenticator passed

    def _options(self) -> dict[str, Any]:
        return {"connection_verify": self.ca} if self.ca else {}

    async def create_container(self, container: str) -> str:
        """A new container, made with the account key (the operator's step, not the agent's); its URL, no SAS."""
        # The checkpoint store extension vendors azure-storage-blob; no other Storage package is installed.
        from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import BlobServiceClient

        key = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
        async with BlobServiceClient(self.account_url, credential=key, **self._options()) as service:
            await service.create_container(container)
        return f"{self.account_url}/{container}"

    async def container_sas_url(self, container: str) -> str:
        """A new container and a SAS URL for it (read, write, list, delete: what the SDK's store needs)."""
        from datetime import UTC, datetime, timedelta

        from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob import (
            ContainerSasPermissions, generate_container_sas)

        url = await self.create_container(container)
        sas = generate_container_sas(DEV_ACCOUNT, container, account_key=DEV_KEY,
                                     permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True),
                                     expiry=datetime.now(UTC) + timedelta(hours=1))
        return f"{url}?{sas}"

    def key_store(self, container: str) -> Any:
        """The SDK's BlobCheckpointStore on `container` with the account key: reads what the runtime wrote."""
        from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

        key = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
        return BlobCheckpointStore(self.account_url, container, credential=key, **self._options())

    def log(self) -> str:
        return self.debug_log.read_text(errors="replace") if self.debug_log and self.debug_log.exists() else ""

    async def tokens_accepted(self, at_least: int = 1) -> int:
        """How many requests Azurite's Bearer authenticator accepted (its debug log), once it logged `at_least`."""
        import anyio

        for _ in range(200):  # a bound, not a measurement: Azurite writes its log behind its answers
            if self.log().count(TOKEN_ACCEPTED) >= at_least:
                break
            await anyio.sleep(0.05)
        return self.log().count(TOKEN_ACCEPTED)


def _binary() -> str | None:
    configured = os.environ.get("AGENTSEAT_TEST_AZURITE")
    local = _REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    return configured or (str(local) if local.exists() else shutil.which("azurite-blob"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_azurite(tmp_path: Path, *, tls: tuple[Path, Path, Path] | None = None,
                  oauth: bool = False) -> Iterator[Azurite]:
    """Azurite on a free loopback port; `tls` = (certificate, key, CA) serves HTTPS, `oauth` takes Bearer tokens."""
    binary = _binary()
    if binary is None:
        pytest.skip("Azurite is not installed: npm install --prefix .azurite azurite@3 (see .ci/run)")
    port = _free_port()
    args = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
    context, debug_log = None, None
    if tls is not None:
        cert, key, ca = tls
        debug_log = tmp_path / f"azurite-{port}.log"
        args += ["--cert", str(cert), "--key", str(key), "--debug", str(debug_log)]
        context = ssl.create_default_context(cafile=str(ca))
    if oauth:
        args += ["--oauth", "basic"]  # Azurite refuses it without HTTPS
    scheme = "https" if tls else "http"
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30  # a bound for a slow start, not a measurement
        while True:
            try:  # an HTTP answer, not just a bound port: Azurite binds before it serves
                urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list",  # noqa: S310
                                       timeout=2, context=context)
                break
            except urllib.error.HTTPError:
                break  # 403 without a signature: it serves
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.05)
        yield Azurite(f"{scheme}://127.0.0.1:{port}/{DEV_ACCOUNT}", ca=str(tls[2]) if tls else None,
                      debug_log=debug_log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def sandbox_tls(sandbox: Sandbox) -> tuple[Path, Path, Path]:
    """The sandbox PKI's server certificate (for localhost and 127.0.0.1), its key, and the CA that signed it."""
    pki = sandbox.pki
    return pki.server_cert_path, pki.server_key_path, pki.ca_path


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    with start_azurite(tmp_path) as found:
        yield found


@pytest.fixture
def azurite_oauth(tmp_path: Path, sandbox: Sandbox) -> Iterator[Azurite]:
    """Azurite on HTTPS with `--oauth basic`: it takes the sandbox's Storage tokens."""
    with start_azurite(tmp_path, tls=sandbox_tls(sandbox), oauth=True) as found:
        yield found


@pytest.fixture(params=["sqlite", "blob"])
async def either_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Each checkpoint store the runtime uses: its own SQLite one, and the SDK's Blob store on Azurite."""
    from agentseat.eventhub.checkpoints import SqliteCheckpointStore

    if request.param == "sqlite":
        found: Any = SqliteCheckpointStore(tmp_path / "inbox.db")
    else:
        from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

        azurite: Azurite = request.getfixturevalue("azurite")
        url = await azurite.container_sas_url("records")
        account, _, query = url.partition("?")
        found = BlobCheckpointStore(f"{account.rsplit('/', 1)[0]}?{query}", "records")
    yield found
    await found.close()
