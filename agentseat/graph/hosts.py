"""Which hosts the agent fetches Microsoft 365 content from: Graph and SharePoint, nothing else.

A file reference's URL and a download redirect's target are chosen outside the agent (a
sender, a forged message, a compromised redirect), so each is checked before any request:
https only, no credentials in the URL, and the host one of the configured Graph host,
`graph.microsoft.com`, or a `*.sharepoint.com` site (where OneDrive and Teams files live).
With the sandbox as the Graph base, its own host is the Graph host, and its files live there.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import GraphError

GRAPH_HOST = "graph.microsoft.com"
SHAREPOINT_SUFFIX = ".sharepoint.com"


def content_host_allowed(url: str, graph_host: str) -> bool:
    """Whether `url` is https on the Graph host (`host[:port]`, as configured), Graph, or SharePoint."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username or parts.password or not parts.hostname:
        return False
    host = parts.hostname.lower()
    if parts.netloc.lower() == graph_host.lower():
        return True
    if port not in (None, 443):
        return False
    return host == GRAPH_HOST or (host.endswith(SHAREPOINT_SUFFIX) and host != SHAREPOINT_SUFFIX[1:])


def check_content_url(url: str, graph_host: str, what: str) -> str:
    """`url`, or a GraphError `ForeignHost` naming `what` (a file link, a download redirect)."""
    if not content_host_allowed(url, graph_host):
        try:
            host = urlsplit(url).hostname or "?"
        except ValueError:
            host = "?"
        raise GraphError(f"refused to fetch {what} from {host}: only Graph and SharePoint hosts are fetched",
                         status=0, code="ForeignHost",
                         hint="the attachment does not point at Microsoft 365; ask the sender to share it in Teams")
    return url
