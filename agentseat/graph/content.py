"""Binary content from Graph: a hosted image's `$value`, a driveItem's `/content`.

Graph may answer 200 with the bytes or 302 to a pre-authenticated URL (driveitem-get-content:
"returns a 302 Found response redirecting to a pre-authenticated download URL"). The redirect
is never followed with the token: its target is checked against the Graph and SharePoint hosts
(hosts.py) and fetched on a session that never saw the token (preauth.py). Either way at most
`limit` bytes are read.
"""

from __future__ import annotations

from urllib.parse import urljoin

from ..config import Settings
from . import preauth
from .client import GraphClient
from .hosts import check_content_url


async def get_content(graph: GraphClient, settings: Settings, path: str, limit: int) -> tuple[bytes, str]:
    """The bytes at `path` (at most `limit`) and their Content-Type."""
    response = await graph.request("GET", path, raw=limit, redirects=False)
    headers = {k.lower(): v for k, v in response.headers.items()}
    if 300 <= response.status < 400:
        location = urljoin(graph.url(path), headers.get("location", ""))  # a relative Location is on the Graph host
        return await preauth.get_bytes(settings, check_content_url(location, settings.graph_host,
                                                                   "a download redirect"), limit)
    body = response.body if isinstance(response.body, bytes) else b""
    return body, headers.get("content-type", "").partition(";")[0].strip()
