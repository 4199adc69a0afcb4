"""SharePoint sites over real HTTPS: the site resource by id and path, its library, and member-only access."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, urlsplit

from agentseat.sandbox.app import Sandbox
from tests.sandbox._drive import ADA, AGENT, ALAN, GRACE, put_file, token
from tests.sandbox._files import raw_call
from tests.sandbox._graph import call


async def test_the_demo_site_is_found_by_path_and_id_and_serves_its_library(sandbox: Sandbox) -> None:
    agent = token(sandbox, AGENT)
    status, site, _ = await call(sandbox, "GET", "/v1.0/sites/contoso.sharepoint.com:/sites/Engineering", agent)
    assert status == 200, site
    host, collection, web_id = site["id"].split(",")
    assert host == "contoso.sharepoint.com" and len(collection) == len(web_id) == 36
    assert site["displayName"] == "Engineering" and site["name"] == "Engineering"
    assert site["webUrl"] == f"{sandbox.url}/sites/Engineering"
    # The host of the site's webUrl finds it too (what a client has in hand from a link).
    netloc = urlsplit(sandbox.url).netloc
    status, same, _ = await call(sandbox, "GET", f"/v1.0/sites/{netloc}:/sites/Engineering:", agent)
    assert status == 200 and same["id"] == site["id"]
    status, by_id, _ = await call(sandbox, "GET", f"/v1.0/sites/{site['id']}", agent)
    assert status == 200 and by_id["id"] == site["id"]
    status, drive, _ = await call(sandbox, "GET", f"/v1.0/sites/{site['id']}/drive", agent)
    assert status == 200 and drive["driveType"] == "documentLibrary"
    assert drive["webUrl"] == f"{sandbox.url}/sites/Engineering/Shared%20Documents"
    status, found, _ = await call(sandbox, "GET", "/v1.0/sites?search=engineering", agent)
    assert status == 200 and [s["id"] for s in found["value"]] == [site["id"]]
    status, found, _ = await call(sandbox, "GET", "/v1.0/sites?search=engineering", token(sandbox, GRACE))
    assert status == 200 and found["value"] == []  # not a member: the site is not hers to find
    status, drives, _ = await call(sandbox, "GET", f"/v1.0/sites/{site['id']}/drives", agent)
    assert status == 200 and [d["id"] for d in drives["value"]] == [drive["id"]]
    # Write through the site path, read back through /drives/{drive-id}: a drive is a drive.
    status, body, _ = await raw_call(sandbox, "PUT", f"/v1.0/sites/{site['id']}/drive/root:/Specs/plan.md:/content",
                                     agent, data=b"# Plan\n")
    assert status == 201, body
    status, item, _ = await call(sandbox, "GET", f"/v1.0/drives/{drive['id']}/root:/Specs/plan.md", agent)
    assert status == 200 and item["parentReference"]["siteId"] == site["id"]
    assert item["createdBy"]["user"]["email"] == AGENT
    status, session, _ = await call(sandbox, "POST",
                                    f"/v1.0/sites/{site['id']}/drive/root:/Specs/data.bin:/createUploadSession", agent)
    assert status == 200, session
    status, body, _ = await raw_call(sandbox, "PUT", session["uploadUrl"], data=b"0123456789",
                                     headers={"Content-Range": "bytes 0-9/10"})
    uploaded = json.loads(body)
    assert status == 201 and uploaded["parentReference"]["driveId"] == drive["id"]
    assert uploaded["createdBy"]["user"]["email"] == AGENT  # who made the session, not the site
    assert item["webUrl"] == f"{sandbox.url}/sites/Engineering/Shared%20Documents/Specs/plan.md"
    # A folder made explicitly (driveitem-post-children), then the same name again: 409, or renamed.
    status, folder, _ = await call(sandbox, "POST", f"/v1.0/sites/{site['id']}/drive/root/children", agent,
                                   body={"name": "Notes", "folder": {}})
    assert status == 201 and folder["folder"]["childCount"] == 0
    status, body, _ = await call(sandbox, "POST", f"/v1.0/drives/{drive['id']}/root/children", agent,
                                 body={"name": "notes", "folder": {}})
    assert status == 409 and body["error"]["code"] == "nameAlreadyExists"
    status, renamed, _ = await call(sandbox, "POST", f"/v1.0/drives/{drive['id']}/items/{folder['id']}/children",
                                    agent, body={"name": "Week 1", "folder": {},
                                                 "@microsoft.graph.conflictBehavior": "rename"})
    assert status == 201 and renamed["parentReference"]["id"] == folder["id"]
    status, kids, _ = await call(sandbox, "GET", f"/v1.0/sites/{site['id']}/drive/root/children", agent)
    assert [k["name"] for k in kids["value"]] == ["Notes", "Specs"]
    # Ada is a member too and reads it; Grace is not, and is refused the site, its drive and the file.
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/drives/{drive['id']}/items/{item['id']}/content",
                                        token(sandbox, ADA))
    assert status == 302
    status, data, _ = await raw_call(sandbox, "GET", headers["Location"])
    assert data == b"# Plan\n"
    grace = token(sandbox, GRACE)
    for path in (f"/v1.0/sites/{site['id']}", f"/v1.0/sites/{site['id']}/drive",
                 f"/v1.0/drives/{drive['id']}/items/{item['id']}"):
        status, body, _ = await call(sandbox, "GET", path, grace)
        assert status == 403 and body["error"]["code"] == "accessDenied", path
    status, body, _ = await raw_call(sandbox, "PUT", f"/v1.0/drives/{drive['id']}/root:/x.txt:/content", grace,
                                     data=b"x")
    assert status == 403


async def test_site_routes_need_a_sites_scope_and_unknown_sites_are_404(sandbox: Sandbox) -> None:
    files_only = token(sandbox, AGENT, ["Files.ReadWrite"])
    status, body, _ = await call(sandbox, "GET", "/v1.0/sites/contoso.sharepoint.com:/sites/Engineering", files_only)
    assert status == 403 and "Sites.Read.All" in body["error"]["message"]
    agent = token(sandbox, AGENT)
    for path in ("/v1.0/sites/contoso.sharepoint.com:/sites/Nowhere", "/v1.0/sites/elsewhere.example:/sites/Engineering",
                 "/v1.0/sites/contoso.sharepoint.com,00000000-0000-0000-0000-000000000000,x"):
        status, body, _ = await call(sandbox, "GET", path, agent)
        assert status == 404 and body["error"]["code"] == "itemNotFound", path


async def test_control_api_makes_a_site_whose_members_alone_use_its_library(sandbox: Sandbox) -> None:
    status, made, _ = await call(sandbox, "POST", "/_sandbox/sites", body={"name": "Finance", "members": [GRACE]})
    assert status == 201, made
    assert made["web_url"] == f"{sandbox.url}/sites/Finance" and made["site_id"].startswith("contoso.sharepoint.com,")
    status, again, _ = await call(sandbox, "POST", "/_sandbox/sites", body={"name": "finance", "members": []})
    assert status == 409
    status, bad, _ = await call(sandbox, "POST", "/_sandbox/sites", body={"name": "Fin", "members": ["no@x.test"]})
    assert status == 404 and "members" in bad["error"]
    grace = token(sandbox, GRACE)
    status, site, _ = await call(sandbox, "GET", f"/v1.0/sites/{quote(made['site_id'])}", grace)
    assert status == 200 and site["name"] == "Finance"
    status, drive, _ = await call(sandbox, "GET", f"/v1.0/sites/{made['site_id']}/drive", grace)
    assert drive["id"] == made["drive_id"]
    # A file put in the site's library by name: the control API's owner may be a site.
    put = await put_file(sandbox, "Finance", "Budgets/2027.csv", b"q,amount\n1,10\n")
    assert put["drive_id"] == made["drive_id"]
    assert put["web_url"] == f"{sandbox.url}/sites/Finance/Shared%20Documents/Budgets/2027.csv"
    status, item, _ = await call(sandbox, "GET", f"/v1.0/drives/{made['drive_id']}/items/{put['item_id']}", grace)
    assert status == 200 and item["name"] == "2027.csv"
    status, body, _ = await call(sandbox, "GET", f"/v1.0/drives/{made['drive_id']}/items/{put['item_id']}",
                                 token(sandbox, ALAN))
    assert status == 403
    status, looked, _ = await call(sandbox, "GET", f"/_sandbox/files/{made['drive_id']}/{put['item_id']}")
    assert status == 200 and base64.b64decode(looked["content_base64"]) == b"q,amount\n1,10\n"
    assert looked["metadata"]["parentReference"]["siteId"] == made["site_id"]


async def test_the_tenant_root_site_is_open_to_everyone(sandbox: Sandbox) -> None:
    grace = token(sandbox, GRACE)
    status, root, _ = await call(sandbox, "GET", "/v1.0/sites/root", grace)
    assert status == 200, root
    assert root["webUrl"] == sandbox.url and root["siteCollection"]["hostname"] == "contoso.sharepoint.com"
    status, same, _ = await call(sandbox, "GET", "/v1.0/sites/contoso.sharepoint.com", grace)
    assert status == 200 and same["id"] == root["id"]
    # The host a client has from the root site finds the team sites by path.
    host = root["siteCollection"]["hostname"]
    status, eng, _ = await call(sandbox, "GET", f"/v1.0/sites/{host}:/sites/Engineering", token(sandbox, AGENT))
    assert status == 200 and eng["name"] == "Engineering"
    status, body, _ = await raw_call(sandbox, "PUT", "/v1.0/sites/root/drive/root:/Announcements/hello.txt:/content",
                                     grace, data=b"hello")
    assert status == 201, body
    status, item, _ = await call(sandbox, "GET", "/v1.0/sites/root/drive/root:/Announcements/hello.txt",
                                 token(sandbox, ALAN))
    assert status == 200 and item["webUrl"] == f"{sandbox.url}/Shared%20Documents/Announcements/hello.txt"
