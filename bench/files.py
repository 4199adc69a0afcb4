"""File upload memory: peak RSS while `upload_file`'s code path sends a 100 MB file.

    python -m bench.files [--quick] [--root DIR]

The sandbox runs in its own process (bench/sandbox_server.py); a child process does what
`upload_file` does (attachments/outbound.py `check_file`, then files/writing.py `upload`:
an upload session of 10 MiB ranges, each read from disk when it is sent) and reports its
peak RSS (VmHWM) before and after the upload, so the difference is what the upload cost.
A streaming upload stays near one range above the baseline; one that loaded the file
would add 100 MB. `quick` uploads 30 MB instead. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from .harness import REPO, SandboxHost, child_env

_MB = 1024 * 1024


def measure(root: Path, quick: bool) -> dict[str, Any]:
    """Blocking (a sandbox process and a child process); call through `anyio.to_thread.run_sync` from async code."""
    return anyio.run(_measure, root, quick)


async def _measure(root: Path, quick: bool) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    size_mb = 30 if quick else 100
    path = _blob(root / f"upload-{size_mb}mb.bin", size_mb * _MB)
    async with SandboxHost(root / "files-sandbox") as host:
        env = await host.provision(root / "files-agent")
        code = f"from bench.files import _upload_once; _upload_once({str(path)!r})"
        done = await anyio.run_process([sys.executable, "-c", code], check=True, cwd=str(REPO),
                                       env={**os.environ, **child_env(env)})
    row = json.loads(done.stdout.decode().strip().splitlines()[-1])
    row["mb"] = size_mb
    row["mb_per_s"] = round(size_mb / row["seconds"], 1)
    row["rss_added_mb"] = round(row["peak_rss_mb"] - row["baseline_rss_mb"], 1)
    return {"upload": row}


def _blob(path: Path, size: int) -> Path:
    """A file of `size` bytes written 1 MiB at a time (never whole in this process's memory)."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = bytes(range(256)) * (_MB // 256)
    with path.open("wb") as fh:
        for n in range(size // _MB):
            fh.write(block[n % 256:] + block[:n % 256])
    return path


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _upload_once(path: str) -> None:
    """In a child: what upload_file runs, with the agent's real token chain; prints one JSON line."""
    from agentseat.logging import configure

    configure("warning", "console", stream=sys.stderr)
    print(json.dumps(anyio.run(_upload, path)))


async def _upload(path: str) -> dict[str, Any]:
    from agentseat.attachments.outbound import check_file
    from agentseat.config import load_settings
    from agentseat.files import deny_list
    from agentseat.files.writing import check_path, drive_base, upload
    from agentseat.graph.client import GraphClient
    from agentseat.identity.keys import KeyStore
    from agentseat.identity.tokens import TokenProvider

    settings = load_settings()
    store = KeyStore(settings)
    tokens = TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))
    async with GraphClient(settings, tokens) as graph:
        await tokens.get()  # the token chain's own cost is not the upload's
        base = await drive_base(graph, deny_list(settings), "onedrive", None)
        baseline = _peak_mb()
        started = time.perf_counter()
        local = check_file(path, settings)
        item = await upload(graph, settings, base, check_path(f"bench/{Path(path).name}"), local.size, local.read,
                            "replace")
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(_peak_mb(), 1),
            "arrived_whole": item.get("size") == local.size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--root", type=Path, default=Path("/tmp/agentseat-bench-files"))
    args = parser.parse_args()
    print(json.dumps(measure(args.root, args.quick), indent=1))


if __name__ == "__main__":
    main()
