"""File refs, the site deny-list and drive paths: what each accepts and what it refuses, before any Graph call."""

from __future__ import annotations

import pytest

from agentseat.errors import ToolInputError
from agentseat.files.deny import DenyList
from agentseat.files.refs import AttachmentRef, ItemRef, UrlRef, item_ref, parse_ref
from agentseat.files.writing import check_path
from agentseat.tools.files import _docx_path

SITE = "contoso.sharepoint.com,2c7e8e7a-1111-4c4b-9f2a-6b1c0d7e0a11,9d0f1e2a-2222-4b5c-8d6e-7f8a9b0c1d2e"


def test_each_form_of_ref_names_what_it_should() -> None:
    assert parse_ref("b!AbC-_d/01ABCDEF") == ItemRef("b!AbC-_d", "01ABCDEF")
    assert parse_ref(" https://contoso.sharepoint.com/:w:/s/x/Ee ") == UrlRef("https://contoso.sharepoint.com/:w:/s/x/Ee")
    assert parse_ref("19:abc@thread.v2/1712345678901/aB+c/d==") == AttachmentRef("aB+c/d==", "19:abc@thread.v2",
                                                                                 "1712345678901")
    assert parse_ref("6a1f-guid") == AttachmentRef("6a1f-guid")
    assert str(ItemRef("b!x", "01y")) == "b!x/01y" and ItemRef("b!x", "01y").path == "/drives/b!x/items/01y"


@pytest.mark.parametrize("raw", ["http://contoso.sharepoint.com/x", "a/b/c", "../etc/passwd", "x y", "19:a/b/c",
                                 "b!x/../../me"])
def test_anything_else_is_refused_with_the_forms_a_ref_takes(raw: str) -> None:
    with pytest.raises(ToolInputError) as caught:
        parse_ref(raw)
    assert "drive_id" in (caught.value.hint or "")


def test_an_item_ref_comes_from_the_parent_reference() -> None:
    assert item_ref({"id": "01Z", "parentReference": {"driveId": "b!d"}}) == ItemRef("b!d", "01Z")
    assert item_ref({"id": "01Z"}) is None and item_ref({"id": "0/1", "parentReference": {"driveId": "b!d"}}) is None


def test_a_denied_site_matches_by_id_guid_or_url_prefix_and_nothing_else() -> None:
    by_id = DenyList([SITE])
    assert by_id.item_denied({"parentReference": {"siteId": SITE.upper()}})
    assert not by_id.item_denied({"parentReference": {"siteId": "contoso.sharepoint.com,aaaaaaaa-1111-4c4b-9f2a-"
                                                                "6b1c0d7e0a11,bbbbbbbb-2222-4b5c-8d6e-7f8a9b0c1d2e"}})
    assert DenyList(["2c7e8e7a-1111-4c4b-9f2a-6b1c0d7e0a11"]).site_denied(SITE)
    by_url = DenyList(["https://contoso.sharepoint.com/sites/Legal/"])
    assert by_url.item_denied({"webUrl": "https://contoso.sharepoint.com/sites/legal/Shared%20Documents/a.docx"})
    assert not by_url.item_denied({"webUrl": "https://contoso.sharepoint.com/sites/LegalOps/a.docx"})
    assert not by_url.item_denied({"webUrl": "https://fabrikam.sharepoint.com/sites/Legal/a.docx"})
    assert not DenyList([]) and not DenyList(["contoso.sharepoint.com"]).site_denied(SITE)


def test_drive_paths_follow_onedrive_naming_rules() -> None:
    assert check_path("/notes//2026/summary.md") == "notes/2026/summary.md"
    for bad in ("", "/", "a/../b", "a/./b", "what?.md", "x:y.txt", "trailing./x", " lead/x", "a|b"):
        with pytest.raises(ToolInputError):
            check_path(bad)


def test_a_docx_path_gets_its_extension() -> None:
    assert [_docx_path(p) for p in ("n.md", "n.docx", "n", "dir.v2/n.txt", "a.csv")] == [
        "n.docx", "n.docx", "n.docx", "dir.v2/n.docx", "a.csv.docx"]
