"""The sandbox's OneDrive over real HTTPS: simple upload, upload sessions, download, invite and shares-get."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from agentseat.sandbox.graph.drive import sessions, store, upload
from tests.sandbox._files import raw_call
from tests.sandbox._graph import call

FOLDER = "Microsoft Teams Chat Files"


def put_path(name: str, folder: str = FOLDER) -> str:
    return f"/v1.0/me/drive/root:/{quote(folder)}/{quote(name)}:/content"


async def upload_as(sb: Sandbox, role: str, name: str, data: bytes) -> dict[str, Any]:
    token = user_graph_token(sb, sb.role(role))
    status, body, _ = await raw_call(sb, "PUT", put_path(name), token, data=data,
                                     headers={"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return json.loads(body)


async def test_a_small_upload_is_a_driveitem_with_graphs_shape_and_its_bytes(sandbox: Sandbox) -> None:
    item = await upload_as(sandbox, "agent_user", "report.pdf", b"%PDF-1.7 hello")
    agent = sandbox.tenant.users[sandbox.role("agent_user")]
    assert item["name"] == "report.pdf" and item["size"] == 14 and item["file"]["mimeType"] == "application/pdf"
    guid = item["eTag"].strip('"').split(",")[0]
    assert item["eTag"] == f'"{guid},1"' and guid.startswith("{") and item["cTag"] == f'"c:{guid},1"'
    folder_url = f"{sandbox.url}/personal/agent_contoso_test/Documents/Microsoft%20Teams%20Chat%20Files"
    assert item["webUrl"] == f"{folder_url}/report.pdf"
    assert item["parentReference"]["driveId"] == store.drive_id_of(agent.id)
    assert item["parentReference"]["path"].endswith(f"root:/{FOLDER}")
    assert item["createdBy"]["user"]["id"] == agent.id and item["lastModifiedBy"]["user"]["email"] == agent.mail
    token = user_graph_token(sandbox, agent.id)
    status, by_id, _ = await call(sandbox, "GET", f"/v1.0/me/drive/items/{item['id']}", token)
    assert status == 200 and by_id["id"] == item["id"]
    status, by_path, _ = await call(sandbox, "GET", f"/v1.0/me/drive/root:/{quote(FOLDER)}/report.pdf", token)
    assert status == 200 and by_path["id"] == item["id"]
    status, folder, _ = await call(sandbox, "GET", f"/v1.0/me/drive/root:/{quote(FOLDER)}", token)
    assert status == 200 and folder["folder"]["childCount"] == 1
    # Content: 302 to a pre-authenticated URL on the sandbox host, fetched without a token.
    drive = item["parentReference"]["driveId"]
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/drives/{drive}/items/{item['id']}/content", token)
    assert status == 302 and headers["Location"].startswith(f"{sandbox.url}/_sandbox/download/")
    status, data, headers = await raw_call(sandbox, "GET", headers["Location"])
    assert status == 200 and data == b"%PDF-1.7 hello" and headers["Content-Type"] == "application/pdf"
    # Replacing keeps the item and moves its version on (200, not 201).
    status, body, _ = await raw_call(sandbox, "PUT", put_path("report.pdf"), token, data=b"v2")
    assert status == 200
    status, again, _ = await call(sandbox, "GET", f"/v1.0/me/drive/items/{item['id']}", token)
    assert again["eTag"] == f'"{guid},2"' and again["size"] == 2


async def test_upload_conflicts_limits_and_missing_items_answer_as_onedrive(sandbox: Sandbox,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    await upload_as(sandbox, "agent_user", "a.txt", b"one")
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await raw_call(sandbox, "PUT", put_path("a.txt") + "?@microsoft.graph.conflictBehavior=fail",
                                     token, data=b"two")
    assert status == 409 and b"nameAlreadyExists" in body
    status, body, _ = await raw_call(sandbox, "PUT", put_path("a.txt") + "?@microsoft.graph.conflictBehavior=rename",
                                     token, data=b"two")
    assert status == 201 and b'"name": "a 1.txt"' in body.replace(b'":"', b'": "')
    monkeypatch.setattr(upload, "SIMPLE_UPLOAD_MAX", 1024)
    status, body, _ = await raw_call(sandbox, "PUT", put_path("big.bin"), token, data=b"x" * 2048)
    assert status == 413 and b"createUploadSession" in body
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/items/01NOPE", token)
    assert status == 404 and body["error"]["code"] == "itemNotFound"
    status, body, _ = await raw_call(sandbox, "PUT", put_path("bad:name.txt"), token, data=b"x")
    assert status in (400, 404)
    no_files = user_graph_token(sandbox, sandbox.role("agent_user"), scopes=["Chat.ReadWrite"])
    status, body, _ = await raw_call(sandbox, "PUT", put_path("c.txt"), no_files, data=b"x")
    assert status == 403


async def test_an_upload_session_takes_ordered_ranges_and_makes_the_file(sandbox: Sandbox) -> None:
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    data = bytes(range(256)) * 1400 * 2  # 716,800 bytes: two 320 KiB fragments and a tail
    status, session, _ = await call(sandbox, "POST",
                                    f"/v1.0/me/drive/root:/{quote(FOLDER)}/big.bin:/createUploadSession", token,
                                    body={"item": {"@microsoft.graph.conflictBehavior": "rename"}})
    assert status == 200 and session["nextExpectedRanges"] == ["0-"] and "expirationDateTime" in session
    url, unit, total = session["uploadUrl"], sessions.FRAGMENT_UNIT, len(data)

    def rng(a: int, b: int) -> dict[str, str]:
        return {"Content-Range": f"bytes {a}-{b}/{total}"}

    # Out of order, and a fragment that is not a multiple of 320 KiB: refused, nothing kept.
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[unit:2 * unit], headers=rng(unit, 2 * unit - 1))
    assert status == 416 and b"invalidRange" in body
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[:1000], headers=rng(0, 999))
    assert status == 400 and b"320 KiB" in body
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[:unit], headers=rng(0, unit - 1))
    assert status == 202 and f'["{unit}-"]'.encode() in body.replace(b" ", b"")
    status, body, _ = await raw_call(sandbox, "GET", url)
    assert status == 200 and f'["{unit}-"]'.encode() in body.replace(b" ", b"")
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[:unit], headers=rng(0, unit - 1))
    assert status == 416  # the same range again overlaps what was received
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[unit:2 * unit], headers=rng(unit, 2 * unit - 1))
    assert status == 202
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[2 * unit:], headers=rng(2 * unit, total - 1))
    assert status == 201, body
    status, item, _ = await call(sandbox, "GET", f"/v1.0/me/drive/root:/{quote(FOLDER)}/big.bin", token)
    assert item["size"] == total
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/me/drive/items/{item['id']}/content", token)
    status, got, _ = await raw_call(sandbox, "GET", headers["Location"])
    assert got == data
    status, body, _ = await raw_call(sandbox, "PUT", url, data=b"x", headers=rng(0, 0))
    assert status == 404  # the session is over
    # A session's conflictBehavior defaults to fail (driveitem-createuploadsession).
    session_path = f"/v1.0/me/drive/root:/{quote(FOLDER)}/{{}}:/createUploadSession"
    status, body, _ = await call(sandbox, "POST", session_path.format("big.bin"), token)
    assert status == 409 and body["error"]["code"] == "nameAlreadyExists"
    status, session, _ = await call(sandbox, "POST", session_path.format("new.bin"), token)
    status, _, _ = await raw_call(sandbox, "DELETE", session["uploadUrl"])
    assert status == 204
    status, _, _ = await raw_call(sandbox, "GET", session["uploadUrl"])
    assert status == 404


async def test_an_invited_colleague_reads_the_file_by_its_url_and_others_are_denied(sandbox: Sandbox) -> None:
    item = await upload_as(sandbox, "agent_user", "plan.txt", b"the plan")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    ada_id, grace_id = sandbox.role("sponsor"), sandbox.role("colleague1")
    share = store.share_id(item["webUrl"])
    ada = user_graph_token(sandbox, ada_id)
    status, body, _ = await call(sandbox, "GET", f"/v1.0/shares/{share}/driveItem", ada)
    assert status == 403 and body["error"]["code"] == "accessDenied"
    drive = item["parentReference"]["driveId"]
    status, body, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{item['id']}/invite", ada,
                                 body={"recipients": [{"email": "grace@contoso.test"}], "roles": ["read"]})
    assert status == 404 and body["error"]["code"] == "itemNotFound"  # not in ada's own drive
    status, body, _ = await call(sandbox, "POST", f"/v1.0/drives/{drive}/items/{item['id']}/invite", ada,
                                 body={"recipients": [{"email": "grace@contoso.test"}], "roles": ["read"]})
    assert status == 403 and body["error"]["code"] == "accessDenied"
    status, perms, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{item['id']}/invite", agent, body={
        "recipients": [{"email": "ada@contoso.test"}], "roles": ["read"], "requireSignIn": True,
        "sendInvitation": False})
    assert status == 200 and perms["value"][0]["roles"] == ["read"]
    assert perms["value"][0]["grantedToV2"]["user"]["id"] == ada_id
    status, shared, _ = await call(sandbox, "GET", f"/v1.0/shares/{share}/driveItem", ada)
    assert status == 200 and shared["id"] == item["id"] and shared["name"] == "plan.txt"
    assert shared["parentReference"]["driveId"] == item["parentReference"]["driveId"]
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/shares/{share}/driveItem/content", ada)
    assert status == 302
    status, data, _ = await raw_call(sandbox, "GET", headers["Location"])
    assert status == 200 and data == b"the plan"
    status, _, _ = await raw_call(sandbox, "GET", f"/v1.0/drives/{drive}/items/{item['id']}/content", ada)
    assert status == 302
    grace = user_graph_token(sandbox, grace_id)
    for path in (f"/v1.0/shares/{share}/driveItem", f"/v1.0/shares/{share}/driveItem/content",
                 f"/v1.0/drives/{drive}/items/{item['id']}"):
        status, body, _ = await raw_call(sandbox, "GET", path, grace)
        assert status == 403 and b"accessDenied" in body, path
    status, perms, _ = await call(sandbox, "GET", f"/v1.0/drives/{drive}/items/{item['id']}/permissions", ada)
    assert [p["grantedToV2"]["user"]["id"] for p in perms["value"]] == [ada_id]
    bad = [({"recipients": [], "roles": ["read"]}, "recipients"),
           ({"recipients": [{"email": "ada@contoso.test"}], "roles": ["owner"]}, "roles"),
           ({"recipients": [{"email": "stranger@elsewhere.test"}], "roles": ["read"]}, "not a user")]
    for payload, words in bad:
        status, body, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{item['id']}/invite", agent,
                                     body=payload)
        assert status == 400 and words in body["error"]["message"], body
    status, body, _ = await call(sandbox, "GET", "/v1.0/shares/u!aHR0cHM6Ly9ub3doZXJl/driveItem", ada)
    assert status == 404 and body["error"]["code"] == "itemNotFound"
