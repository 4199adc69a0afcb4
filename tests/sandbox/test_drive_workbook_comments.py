"""Workbook comments over real HTTPS: listed from the file's threaded comments, replied to through Graph."""

from __future__ import annotations

import io
import zipfile

from agentseat.sandbox.app import Sandbox
from tests.sandbox._drive import ADA, AGENT, GRACE, put_file, token
from tests.sandbox._graph import call

NS = "http://schemas.microsoft.com/office/spreadsheetml/2018/threadedcomments"
FIRST, REPLY = "{6A1B2C3D-0000-4000-8000-000000000001}", "{6A1B2C3D-0000-4000-8000-000000000002}"


def workbook_with_comments() -> bytes:
    """An .xlsx carrying a threaded comment and a reply, where Excel keeps them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"/>')
        archive.writestr("xl/threadedComments/threadedComment1.xml", (
            f'<?xml version="1.0"?><ThreadedComments xmlns="{NS}">'
            f'<threadedComment ref="B2" id="{FIRST}" personId="{{P1}}"><text>Is this total right?</text>'
            f'</threadedComment><threadedComment ref="B2" id="{REPLY}" parentId="{FIRST}" personId="{{P2}}">'
            '<text>Checking.</text></threadedComment></ThreadedComments>'))
    return buffer.getvalue()


async def test_comments_are_listed_from_the_workbook_and_a_reply_is_kept(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, ADA, "Budget.xlsx", workbook_with_comments(), share_with=[AGENT], role="write")
    base = f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}/workbook/comments"
    agent = token(sandbox, AGENT)
    status, body, _ = await call(sandbox, "GET", base, agent)
    assert status == 200, body
    assert body["value"] == [{"id": FIRST, "content": "Is this total right?", "contentType": "plain"}]
    status, one, _ = await call(sandbox, "GET", f"{base}/{FIRST}", agent)
    assert status == 200 and one["content"] == "Is this total right?"
    status, reply, _ = await call(sandbox, "POST", f"{base}/{FIRST}/replies", agent,
                                  body={"content": "Yes, it matches the ledger.", "contentType": "plain"})
    assert status == 201 and reply["content"] == "Yes, it matches the ledger." and reply["id"].startswith("{")
    status, replies, _ = await call(sandbox, "GET", f"{base}/{FIRST}/replies", token(sandbox, ADA))
    assert [r["content"] for r in replies["value"]] == ["Checking.", "Yes, it matches the ledger."]
    # Grace cannot see the workbook; a missing comment is 404; a reply needs content.
    status, _, _ = await call(sandbox, "GET", base, token(sandbox, GRACE))
    assert status == 403
    status, body, _ = await call(sandbox, "GET", f"{base}/{{00000000-0000-0000-0000-000000000000}}", agent)
    assert status == 404 and body["error"]["code"] == "itemNotFound"
    status, body, _ = await call(sandbox, "POST", f"{base}/{FIRST}/replies", agent, body={"content": ""})
    assert status == 400


async def test_only_workbooks_have_comments(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, AGENT, "Notes/plan.docx", b"PK\x03\x04 not really")
    status, body, _ = await call(sandbox, "GET", f"/v1.0/me/drive/items/{put['item_id']}/workbook/comments",
                                 token(sandbox, AGENT))
    assert status == 400 and body["error"]["code"] == "notSupported"
    put = await put_file(sandbox, AGENT, "broken.xlsx", b"not a zip")
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/root:/broken.xlsx:/workbook/comments",
                                 token(sandbox, AGENT))
    assert status == 400 and body["error"]["code"] == "invalidRequest"
