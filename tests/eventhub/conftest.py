"""Azurite, Microsoft's Storage emulator (npm), for the Blob checkpoint store tests.

Found at $AGENTSEAT_TEST_AZURITE, `<repo>/.azurite/node_modules/.bin/azurite-blob` (what
.ci/run installs with `npm install --prefix .azurite azurite@3`), or on PATH. Started per
test on a free loopback port, in memory, without telemetry (it would call Application Insights).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Azurite's well-known development account (documented, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class Azurite:
    account_url: str  # http://127.0.0.1:PORT/devstoreaccount1

    async def container_sas_url(self, container: str) -> str:
        """A new container and a SAS URL for it (read, write, list, delete: what the SDK's store needs)."""
        from datetime import UTC, datetime, timedelta

        # The checkpoint store extension vendors azure-storage-blob; no other Storage package is installed.
        from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob import (
            ContainerSasPermissions, generate_container_sas)
        from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import BlobServiceClient

        key = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
        async with BlobServiceClient(self.account_url, credential=key) as service:
            await service.create_container(container)
        sas = generate_container_sas(DEV_ACCOUNT, container, account_key=DEV_KEY,
                                     permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True),
                                     expiry=datetime.now(UTC) + timedelta(hours=1))
        return f"{self.account_url}/{container}?{sas}"


def _binary() -> str | None:
    configured = os.environ.get("AGENTSEAT_TEST_AZURITE")
    local = _REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    return configured or (str(local) if local.exists() else shutil.which("azurite-blob"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    binary = _binary()
    if binary is None:
        pytest.skip("Azurite is not installed: npm install --prefix .azurite azurite@3 (see .ci/run)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
                            cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30  # a bound for a slow start, not a measurement
        while True:
            try:  # an HTTP answer, not just a bound port: Azurite binds before it serves
                urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list", timeout=2)  # noqa: S310
                break
            except urllib.error.HTTPError:
                break  # 403 without a signature: it serves
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.05)
        yield Azurite(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
