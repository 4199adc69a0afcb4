"""Azurite, Microsoft's Storage emulator (npm), as the Blob checkpoint store of a benchmark.

Found as tests/eventhub/conftest.py finds it: $AGENTSEAT_TEST_AZURITE,
`<repo>/.azurite/node_modules/.bin/azurite-blob` (what .ci/run installs), or on PATH.
Started on a free loopback port, in memory, without telemetry; stopped on leaving the block.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from .harness import REPO, free_port

#: Azurite's well-known development account (documented, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MISSING = "Azurite not installed (npm install --prefix .azurite azurite@3, as .ci/run does)"


def binary() -> str | None:
    local = REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    return os.environ.get("AGENTSEAT_TEST_AZURITE") or (str(local) if local.exists() else shutil.which("azurite-blob"))


def _serving(port: int) -> bool:
    try:  # an HTTP answer, not just a bound port: Azurite binds before it serves
        urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list", timeout=2)  # noqa: S310
    except urllib.error.HTTPError:
        return True  # 403 without a signature: it serves
    except OSError:
        return False
    return True


@asynccontextmanager
async def running(workdir: Path, path: str) -> AsyncIterator[str]:
    """Azurite started from `path` (see `binary`); yields its account URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([path, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(30):  # a bound for a slow start, not a measurement
            while not await anyio.to_thread.run_sync(_serving, port):
                if proc.poll() is not None:
                    raise RuntimeError("Azurite did not start")
                await anyio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"
    finally:
        proc.terminate()
        await anyio.to_thread.run_sync(proc.wait, 10)


async def container_sas_url(account_url: str, container: str) -> str:
    """A new container and a SAS URL for it (read, write, list, delete: what the checkpoint store needs)."""
    # The checkpoint store extension vendors azure-storage-blob; no other Storage package is installed.
    from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob import (
        ContainerSasPermissions, generate_container_sas)
    from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import BlobServiceClient

    key = {"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}
    async with BlobServiceClient(account_url, credential=key) as service:
        await service.create_container(container)
    sas = generate_container_sas(DEV_ACCOUNT, container, account_key=DEV_KEY,
                                 permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=2))
    return f"{account_url}/{container}?{sas}"
