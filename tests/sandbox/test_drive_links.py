"""Sharing links and permissions over real HTTPS: createLink, /shares for links and webUrls, revoking access."""

from __future__ import annotations

import base64

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.drive import store
from tests.sandbox._drive import ADA, AGENT, ALAN, GRACE, put_file, token
from tests.sandbox._files import raw_call
from tests.sandbox._graph import call


async def _read_via_share(sb: Sandbox, url: str, who: str, prefer: str | None = None,
                          scopes: list[str] | None = None) -> tuple[int, bytes]:
    share = store.share_id(url)
    headers = {"Prefer": prefer} if prefer else None
    status, body, hdrs = await raw_call(sb, "GET", f"/v1.0/shares/{share}/driveItem/content", token(sb, who, scopes),
                                        headers=headers)
    if status != 302:
        return status, body
    status, data, _ = await raw_call(sb, "GET", hdrs["Location"])
    return status, data


async def test_create_link_answers_201_then_200_and_resolves_through_shares(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, AGENT, "Reports/q3.txt", b"q3 numbers")
    agent = token(sandbox, AGENT)
    path = f"/v1.0/me/drive/items/{put['item_id']}/createLink"
    status, perm, _ = await call(sandbox, "POST", path, agent, body={"type": "view", "scope": "organization"})
    assert status == 201, perm
    assert perm["roles"] == ["read"] and perm["link"]["scope"] == "organization" and perm["link"]["type"] == "view"
    url = perm["link"]["webUrl"]
    assert url.startswith(f"{sandbox.url}/:u:/g/personal/agent_contoso_test/")
    assert perm["shareId"] == store.share_id(url)
    status, same, _ = await call(sandbox, "POST", path, agent, body={"type": "view", "scope": "organization"})
    assert status == 200 and same["id"] == perm["id"]
    status, edit, _ = await call(sandbox, "POST", path, agent, body={"type": "edit"})
    assert status == 201 and edit["roles"] == ["write"] and edit["link"]["scope"] == "organization"
    # Anyone in the organization opens it through the link, though it was never shared with them.
    assert await _read_via_share(sandbox, url, ALAN) == (200, b"q3 numbers")
    status, meta, _ = await call(sandbox, "GET", f"/v1.0/shares/{store.share_id(url)}", token(sandbox, ALAN))
    assert status == 200 and meta["name"] == "q3.txt" and meta["owner"]["user"]["displayName"] == "agentseat agent"
    # Not directly, though, until the link is redeemed (shares-get, Prefer: redeemSharingLink).
    item_path = f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}"
    status, _, _ = await call(sandbox, "GET", item_path, token(sandbox, ALAN))
    assert status == 403
    assert (await _read_via_share(sandbox, url, ALAN, "redeemSharingLinkIfNecessary"))[0] == 200
    status, _, _ = await call(sandbox, "GET", item_path, token(sandbox, ALAN))
    assert status == 403  # "IfNecessary" is for that one request
    assert (await _read_via_share(sandbox, url, ALAN, "redeemSharingLink"))[0] == 200
    status, item, _ = await call(sandbox, "GET", item_path, token(sandbox, ALAN))
    assert status == 200 and item["id"] == put["item_id"]
    # The plain webUrl resolves through /shares for those it is shared with, and no one else.
    assert await _read_via_share(sandbox, put["web_url"], AGENT) == (200, b"q3 numbers")
    status, body = await _read_via_share(sandbox, put["web_url"], GRACE)
    assert status == 403 and b"accessDenied" in body


async def test_link_rules_anonymous_policy_embed_and_who_may_share(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, AGENT, "a.txt", b"a")
    agent = token(sandbox, AGENT)
    path = f"/v1.0/me/drive/items/{put['item_id']}/createLink"
    status, body, _ = await call(sandbox, "POST", path, agent, body={"type": "view", "scope": "anonymous"})
    assert status == 403 and body["error"]["code"] == "accessDenied"  # the tenant's administrator disabled them
    assert "Anonymous sharing links are disabled" in body["error"]["message"]
    status, _, _ = await call(sandbox, "POST", "/_sandbox/behaviour", body={"anonymous_sharing_links": "enabled"})
    assert status == 200
    status, anon, _ = await call(sandbox, "POST", path, agent, body={"type": "view", "scope": "anonymous"})
    assert status == 201 and anon["link"]["scope"] == "anonymous"
    assert await _read_via_share(sandbox, anon["link"]["webUrl"], GRACE) == (200, b"a")
    for payload, code in (({"type": "embed"}, "notSupported"), ({"type": "own"}, "invalidRequest"),
                          ({"type": "view", "scope": "world"}, "invalidRequest"),
                          ({"type": "view", "password": "x"}, "notSupported")):
        status, body, _ = await call(sandbox, "POST", path, agent, body=payload)
        assert status == 400 and body["error"]["code"] == code, payload
    # Someone who may only read cannot make links to it.
    drive_path = f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}/createLink"
    status, body, _ = await call(sandbox, "POST", drive_path, token(sandbox, GRACE), body={"type": "view"})
    assert status == 403
    # An expired link no longer opens anything.
    status, short, _ = await call(sandbox, "POST", path, agent, body={
        "type": "edit", "scope": "users", "expirationDateTime": "2001-01-01T00:00:00Z"})
    assert status == 201 and short["expirationDateTime"].startswith("2001-01-01")
    status, body = await _read_via_share(sandbox, short["link"]["webUrl"], AGENT)
    assert status == 404


async def test_a_users_link_opens_for_the_people_it_names_and_deleting_it_revokes_access(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, ADA, "Plans/roadmap.md", b"# Roadmap", share_with=[AGENT])
    url = put["sharing_url"]
    assert url.startswith(f"{sandbox.url}/:u:/g/personal/ada_contoso_test/")
    assert await _read_via_share(sandbox, url, AGENT) == (200, b"# Roadmap")
    item_path = f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}"
    status, item, _ = await call(sandbox, "GET", item_path, token(sandbox, AGENT))
    assert status == 200  # the link named the agent: it opens the file directly too
    status, body = await _read_via_share(sandbox, url, GRACE)
    assert status == 403 and b"accessDenied" in body
    # The owner sees every permission; the agent only the one that names it.
    ada = token(sandbox, ADA)
    status, perms, _ = await call(sandbox, "GET", f"{item_path}/permissions", ada)
    assert status == 200 and len(perms["value"]) == 1
    link = perms["value"][0]
    assert link["link"]["scope"] == "users" and link["link"]["webUrl"] == url
    assert [g["user"]["email"] for g in link["grantedToIdentitiesV2"]] == [AGENT]
    status, mine, _ = await call(sandbox, "GET", f"{item_path}/permissions", token(sandbox, AGENT))
    assert [p["id"] for p in mine["value"]] == [link["id"]]
    status, one, _ = await call(sandbox, "GET", f"{item_path}/permissions/{link['id']}", ada)
    assert status == 200 and one["id"] == link["id"]
    # The agent may not delete it (read only); the owner may, and the access goes with it.
    status, _, _ = await call(sandbox, "DELETE", f"{item_path}/permissions/{link['id']}", token(sandbox, AGENT))
    assert status == 403
    status, _, _ = await call(sandbox, "DELETE", f"{item_path}/permissions/{link['id']}", ada)
    assert status == 204
    status, _, _ = await call(sandbox, "GET", item_path, token(sandbox, AGENT))
    assert status == 403
    status, body = await _read_via_share(sandbox, url, AGENT)
    assert status == 404 and b"itemNotFound" in body
    status, body, _ = await call(sandbox, "DELETE", f"{item_path}/permissions/{link['id']}", ada)
    assert status == 404 and body["error"]["code"] == "itemNotFound"


async def test_deleting_an_invitation_revokes_it_and_the_control_api_shows_permissions(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, AGENT, "notes.txt", b"notes")
    agent = token(sandbox, AGENT)
    status, perms, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{put['item_id']}/invite", agent, body={
        "recipients": [{"email": GRACE}], "roles": ["write"]})
    assert status == 200
    status, looked, _ = await call(sandbox, "GET", f"/_sandbox/files/{put['drive_id']}/{put['item_id']}")
    assert status == 200 and base64.b64decode(looked["content_base64"]) == b"notes"
    assert looked["metadata"]["name"] == "notes.txt" and looked["metadata"]["size"] == 5
    kinds = sorted("link" if "link" in p else "invite" for p in looked["permissions"])
    assert kinds == ["invite", "link"]  # the control API's own link, and the invitation
    invite = next(p for p in looked["permissions"] if "link" not in p)
    assert invite["roles"] == ["write"] and invite["grantedToV2"]["user"]["email"] == GRACE
    grace = token(sandbox, GRACE)
    status, body, _ = await raw_call(sandbox, "PUT", f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}/content",
                                     grace, data=b"grace was here")
    assert status == 200, body
    status, _, _ = await call(sandbox, "DELETE", f"/v1.0/me/drive/items/{put['item_id']}/permissions/{invite['id']}",
                              agent)
    assert status == 204
    status, _, _ = await call(sandbox, "GET", f"/v1.0/drives/{put['drive_id']}/items/{put['item_id']}", grace)
    assert status == 403
    status, body, _ = await call(sandbox, "GET", f"/_sandbox/files/{put['drive_id']}/01NOPE")
    assert status == 404 and "error" in body
    status, opened, _ = await raw_call(sandbox, "GET", f"/_sandbox/files?url={put['sharing_url']}&as={AGENT}")
    assert status == 200 and opened == b"grace was here"


async def test_an_invitation_with_send_invitation_mails_a_notice_that_opens_the_file(sandbox: Sandbox) -> None:
    put = await put_file(sandbox, ADA, "Specs/design.md", b"# Design")
    ada = token(sandbox, ADA)
    status, _, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{put['item_id']}/invite", ada, body={
        "recipients": [{"email": AGENT}], "roles": ["read"], "sendInvitation": True,
        "message": "Please review <before> Friday"})
    assert status == 200
    status, box, _ = await call(sandbox, "GET", f"/_sandbox/mail/{AGENT}")
    [notice] = [m for m in box["messages"] if m["folder"] == "inbox"]
    assert notice["subject"] == 'Ada Lovelace shared "design.md" with you' and notice["from"] == ADA
    assert notice["body_type"] == "html" and "Please review &lt;before&gt; Friday" in notice["body"]
    assert f'href="{put["web_url"]}"' in notice["body"]
    assert await _read_via_share(sandbox, put["web_url"], AGENT) == (200, b"# Design")
    status, ada_box, _ = await call(sandbox, "GET", f"/_sandbox/mail/{ADA}")
    assert ada_box["messages"] == []  # the service sent it, not Ada: nothing in her sent items
    # Without sendInvitation the permission is granted silently; the control API notifies on request.
    await call(sandbox, "POST", f"/v1.0/me/drive/items/{put['item_id']}/invite", ada, body={
        "recipients": [{"email": GRACE}], "roles": ["read"], "sendInvitation": False})
    other = await put_file(sandbox, ADA, "budget.xlsx", b"PK", share_with=[GRACE], notify=True, message="FYI")
    status, box, _ = await call(sandbox, "GET", f"/_sandbox/mail/{GRACE}")
    assert [m["subject"] for m in box["messages"]] == ['Ada Lovelace shared "budget.xlsx" with you']
    assert other["sharing_url"] in box["messages"][0]["body"] and "FYI" in box["messages"][0]["body"]


async def test_without_an_all_scope_only_the_callers_own_drive_is_in_reach(sandbox: Sandbox) -> None:
    theirs = await put_file(sandbox, ADA, "shared.txt", b"from ada", share_with=[AGENT], role="write")
    mine = await put_file(sandbox, AGENT, "own.txt", b"mine")
    narrow = token(sandbox, AGENT, ["Files.ReadWrite"])
    status, _, _ = await call(sandbox, "GET", f"/v1.0/me/drive/items/{mine['item_id']}", narrow)
    assert status == 200
    item_path = f"/v1.0/drives/{theirs['drive_id']}/items/{theirs['item_id']}"
    status, body, _ = await call(sandbox, "GET", item_path, narrow)
    assert status == 403 and "Files.Read.All" in body["error"]["message"]
    status, body, _ = await raw_call(sandbox, "PUT", f"{item_path}/content", narrow, data=b"x")
    assert status == 403 and b"Files.ReadWrite.All" in body
    # shares-get names Files.ReadWrite as enough, and so it is.
    assert await _read_via_share(sandbox, theirs["sharing_url"], AGENT, scopes=["Files.ReadWrite"]) == (200,
                                                                                                  b"from ada")
    status, body, _ = await raw_call(sandbox, "PUT", f"{item_path}/content", token(sandbox, AGENT), data=b"edited")
    assert status == 200, body
