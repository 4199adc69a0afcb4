"""Only Graph and SharePoint hosts are fetched; a download redirect is checked the same way."""

from __future__ import annotations

import pytest

from agentseat.errors import GraphError
from agentseat.graph.drive import attachment_id, share_id
from agentseat.graph.hosts import check_content_url, content_host_allowed

SANDBOX = "localhost:8443"


@pytest.mark.parametrize("url", [
    "https://graph.microsoft.com/v1.0/chats/x", "https://contoso.sharepoint.com/sites/a/b.docx",
    "https://contoso-my.sharepoint.com/personal/ada/Documents/x.pdf", "https://localhost:8443/personal/x/a.txt",
])
def test_graph_sharepoint_and_the_configured_graph_host_are_allowed(url: str) -> None:
    assert content_host_allowed(url, SANDBOX)


@pytest.mark.parametrize("url", [
    "http://contoso.sharepoint.com/a", "https://evil.test/a", "https://sharepoint.com.evil.test/a",
    "https://evilsharepoint.com/a", "https://user:pw@contoso.sharepoint.com/a", "https://localhost:9999/a",
    "https://contoso.sharepoint.com:8080/a", "https://sharepoint.com/a", "", "not a url", "https://[::1/a",
])
def test_anything_else_is_refused(url: str) -> None:
    assert not content_host_allowed(url, SANDBOX)
    with pytest.raises(GraphError) as info:
        check_content_url(url, SANDBOX, "a file link")
    assert info.value.code == "ForeignHost"


def test_share_ids_follow_the_encoding_rule() -> None:
    # shares-get, "Encoding sharing URLs": unpadded base64url with u! in front.
    assert share_id("https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1") == (
        "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx")


def test_the_attachment_id_is_the_guid_in_the_etag() -> None:
    assert attachment_id({"eTag": "\"{153FA47D-18C9-4179-BE08-9879815A9F90},2\""}) == (
        "153FA47D-18C9-4179-BE08-9879815A9F90")
    with pytest.raises(GraphError):
        attachment_id({"eTag": "\"nothing\""})
