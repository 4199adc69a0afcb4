"""Sharing-notice links in a mail body become file attachments: Microsoft 365 hosts only."""

from __future__ import annotations

from agentseat.attachments.shared_links import listing, share_id, share_url
from agentseat.files.refs import UrlRef, parse_ref

GRAPH = "localhost:8443"
FILE = "https://contoso-my.sharepoint.com/personal/ada/Documents/Q3.docx"


def _html(content: str) -> dict[str, str]:
    return {"contentType": "html", "content": content}


def test_a_notices_link_is_listed_once_under_the_files_name_not_open() -> None:
    body = _html(f'<p>Ada shared <a href="{FILE}">Q3.docx</a> with you.</p><p><a href="{FILE}">Open</a></p>')
    assert listing(body, GRAPH) == [{"id": share_id(FILE), "name": "Q3.docx", "type": "file", "size": None}]


def test_links_elsewhere_plain_text_and_http_are_not_attachments() -> None:
    body = _html('<a href="https://evil.example/Q3.docx">Q3.docx</a><a href="http://contoso.sharepoint.com/x">x</a>'
                 '<a href="https://sharepoint.com.evil.example/x">x</a>')
    assert listing(body, GRAPH) == []
    assert listing({"contentType": "text", "content": FILE}, GRAPH) == []


def test_a_name_from_the_link_text_is_sanitised_and_a_bare_open_gets_a_fallback() -> None:
    body = _html(f'<a href="{FILE}">../../etc/passwd, id:x</a><a href="{FILE}?b=1">Open</a>')
    names = [a["name"] for a in listing(body, GRAPH)]
    assert names[1] == "shared file" and "/" not in names[0] and "," not in names[0] and ":" not in names[0]


def test_a_share_id_round_trips_and_is_a_file_ref() -> None:
    assert share_url(share_id(FILE)) == FILE
    assert parse_ref(share_id(FILE)) == UrlRef(FILE)
    assert share_url("u!!!") is None and share_url("abc") is None
