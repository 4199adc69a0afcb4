"""Reading a driveItem's content as text: download into a private temp dir, read, clean up.

The bytes go to a fresh directory made by `tempfile.mkdtemp` (mode 0700, removed when the read
ends, whatever happens) under a fixed name: the file's own name is data (it only picks the
reader, inside `read_document`) and never becomes a path or reaches a shell. The download
streams to disk with a size limit; the `@microsoft.graph.downloadUrl` (driveItem: "a URL that
can be used to download this file's content. Authentication is not required") or the
`/content` redirect is fetched without the token, on a Graph or SharePoint host only.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio
import structlog

from ..config import Settings
from ..documents import DocumentError, DocumentText, ReadLimits, read_document
from ..errors import GraphError, ToolInputError
from ..graph import preauth
from ..graph.client import GraphClient
from ..graph.hosts import check_content_url
from .refs import ItemRef

log = structlog.get_logger(__name__)

_MB = 1024 * 1024
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def limits_for(settings: Settings) -> ReadLimits:
    return ReadLimits(max_input_bytes=int(settings.file_read_max_mb * _MB))


def _too_large(name: str, size: int | None, limit: int) -> ToolInputError:
    how_big = f"{size / _MB:.3g} MB, over" if size is not None else "larger than"
    return ToolInputError(f"{name!r} is {how_big} the {limit / _MB:.3g} MB read limit (AGENTSEAT_FILE_READ_MAX_MB); "
                          "nothing was read", hint="ask for a smaller file, or an extract of the part you need")


async def _download(graph: GraphClient, settings: Settings, ref: ItemRef, item: dict[str, Any], out: Path,
                    limit: int) -> int:
    url = item.get("@microsoft.graph.downloadUrl")
    if not isinstance(url, str) or not url:
        response = await graph.request("GET", f"{ref.path}/content", raw=limit, redirects=False)
        if not 300 <= response.status < 400:  # the bytes themselves (within the limit)
            body = response.body if isinstance(response.body, bytes) else b""
            await anyio.Path(out).write_bytes(body)
            return len(body)
        location = {k.lower(): v for k, v in response.headers.items()}.get("location", "")
        url = urljoin(graph.url(f"{ref.path}/content"), location)
    return await preauth.download_to(settings, check_content_url(url, settings.graph_host, "a download URL"),
                                     out, limit)


async def read_item(graph: GraphClient, settings: Settings, ref: ItemRef, item: dict[str, Any],
                    limits: ReadLimits) -> DocumentText:
    """The driveItem's content as markdown (or an image's bytes), within `limits`."""
    name = str(item.get("name") or "file")
    if "folder" in item:
        raise ToolInputError(f"{name!r} is a folder, not a file", hint="list_files shows the files in it")
    size = item.get("size")
    if isinstance(size, int) and size > limits.max_input_bytes:
        raise _too_large(name, size, limits.max_input_bytes)
    mime = (item.get("file") or {}).get("mimeType") if isinstance(item.get("file"), dict) else None
    suffix = m.group(0).lower() if (m := _SUFFIX.search(name)) else ""
    tmp = await anyio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix="agentseat-read-"))
    try:
        out = Path(tmp) / f"content{suffix}"
        try:
            got = await _download(graph, settings, ref, item, out, limits.max_input_bytes)
        except GraphError as exc:
            if exc.code == "TooLarge":
                raise _too_large(name, None, limits.max_input_bytes) from exc
            raise
        log.info("file_downloaded", bytes=got)
        try:
            return await anyio.to_thread.run_sync(partial(read_document, out, name=name,
                                                          mime=mime if isinstance(mime, str) else None, limits=limits))
        except DocumentError as exc:
            raise ToolInputError(f"cannot read it: {exc.message}", hint=exc.hint) from exc
    finally:
        await anyio.to_thread.run_sync(partial(_remove, Path(tmp)))


def _remove(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
