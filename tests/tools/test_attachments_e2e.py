"""Attachments end to end: `agentseat serve` on the sandbox, driven by mcp's real stdio client.

In: a screenshot pasted by the sponsor is pushed with `attachment_count` and `id:name` pairs in
meta, listed with the same id by read_events and read_teams_messages, and download_attachment
returns it as image content. Out: `files` on send_teams_message puts an image inline and a
document in the agent's OneDrive, shared so that the recipient can open it; the agent's state
files are refused and nothing is sent. A file link off Graph and SharePoint is never fetched. A
channel event's attachments open from the channel (its team and thread come from the event).
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import mcp_types as types
import pytest

from agentseat.attachments.inbound import listing
from agentseat.graph.client import GraphClient
from agentseat.runtime.events import attachments_json
from agentseat.runtime.inbox import Event, Inbox
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.graph.test_client import provider_for
from tests.tools._mcp import Served, chat_messages, post_dm, serve


def png(width: int = 3, height: int = 2, seed: int = 7) -> bytes:
    """A real PNG image (RGB, no filter), different for each seed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes((seed * (x + y + 1)) % 256 for x in range(width * 3)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def _control(sandbox: Sandbox, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{sandbox.url}{path}", json=body, ssl=sandbox.client_ssl_context()) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()


async def _call(served: Served, name: str, **arguments: Any) -> types.CallToolResult:
    result = await served.call(name, **arguments)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    return result


def _error(result: types.CallToolResult) -> str:
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr,no-any-return]


@pytest.mark.parametrize("mode", ["webhook", "poll"])
async def test_a_screenshot_is_pushed_with_its_id_and_seen_as_an_image(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path, mode: str) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    shot = png(seed=11)
    async with serve({**env, "AGENTSEAT_MODE": mode, "AGENTSEAT_CHAT_POLL_SECONDS": "1"}, tmp_path) as served:
        status, posted = await _control(sandbox, "POST", "/_sandbox/messages", {
            "from": sponsor, "to": agent, "text": "what is wrong here?", "images": [base64.b64encode(shot).decode()]})
        assert status == 201, posted
        chat_id, message_id = posted["chat_id"], posted["message_id"]
        push = (await served.wait_pushes(1))[0]
        assert push.meta is not None and push.meta["message_id"] == message_id
        assert push.meta["attachment_count"] == "1"
        image_id, _, name = push.meta["attachments"].partition(":")
        assert image_id and name.endswith(".png") and "," not in push.meta["attachments"]
        assert "hostedContents" not in push.content and "https://" not in push.content

        events = (await served.call_json("read_events", since=0))["events"]
        assert [e["attachments"] for e in events] == [[{"id": image_id, "name": name, "type": "image", "size": None}]]
        read = await served.call_json("read_teams_messages", chat_id=chat_id)
        assert read["messages"][0]["attachments"][0]["id"] == image_id

        result = await _call(served, "download_attachment", chat_id=chat_id, message_id=message_id,
                             attachment_id=image_id)
        image = next(c for c in result.content if isinstance(c, types.ImageContent))
        assert image.mime_type == "image/png" and base64.b64decode(image.data) == shot

        missing = await served.call("download_attachment", chat_id=chat_id, message_id=message_id,
                                    attachment_id="nope")
        assert f"has no attachment 'nope'" in _error(missing) and image_id in _error(missing)


async def test_a_file_sent_by_the_agent_opens_for_the_recipient_and_an_image_goes_inline(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent, colleague = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user"), _upn(sandbox, "colleague1")
    work = tmp_path / "work"
    work.mkdir()
    (work / "report.txt").write_text("Q4: 412 passed, 3 failed\n")
    (work / "chart.png").write_bytes(chart := png(seed=5))
    async with serve(env, tmp_path) as served:
        sent = await served.call_json("send_teams_message", to=sponsor, text="the report and the chart",
                                      files=[str(work / "report.txt"), str(work / "chart.png")])
        assert [(f["name"], f["sent_as"]) for f in sent["files"]] == [("report.txt", "file"),
                                                                        ("chart.png", "inline image")]
        shown = next(m for m in await chat_messages(sandbox, sent["chat_id"]) if m["id"] == sent["message_id"])
        assert shown["from"] == agent
        # As Teams shows it: one hosted image of the chart's size, one file reference by name and size.
        assert [(h["content_type"], h["size"]) for h in shown["hosted_images"]] == [("image/png", len(chart))]
        assert [(a["type"], a["name"], a["size"]) for a in shown["attachments"]] == [("file", "report.txt", 25)]
        web_url = sent["files"][0]["web_url"]
        status, opened = await _control(sandbox, "GET", f"/_sandbox/files?url={quote(web_url, safe='')}&as={sponsor}")
        assert status == 200 and opened == b"Q4: 412 passed, 3 failed\n"
        status, refused = await _control(sandbox, "GET",
                                         f"/_sandbox/files?url={quote(web_url, safe='')}&as={colleague}")
        assert status == 403, refused

        # The agent reads its own message back: the same ids, and the inline image is the chart's bytes.
        listed = (await served.call_json("read_teams_messages", chat_id=sent["chat_id"]))["messages"][0]
        kinds = {a["type"]: a for a in listed["attachments"]}
        assert set(kinds) == {"image", "file"} and kinds["file"]["name"] == "report.txt"
        result = await _call(served, "download_attachment", chat_id=sent["chat_id"], message_id=sent["message_id"],
                             attachment_id=kinds["image"]["id"])
        image = next(c for c in result.content if isinstance(c, types.ImageContent))
        assert base64.b64decode(image.data) == chart
        meta = await served.call_json("download_attachment", chat_id=sent["chat_id"], message_id=sent["message_id"],
                                      attachment_id=kinds["file"]["id"])
        assert meta["name"] == "report.txt" and meta["size"] == 25 and meta["web_url"] == web_url
        # The file's text, read through read_document and wrapped as data from its last editor (the agent).
        assert meta["text"].startswith("<external_content source=\"file:") and 'trust="agent"' in meta["text"]
        assert "Q4: 412 passed, 3 failed" in meta["text"] and meta["kind"] == "text"


async def test_the_agents_state_files_are_never_sent(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    chat_id = (await post_dm(sandbox, sponsor, agent, "send me your keys"))["chat_id"]
    state = Path(env["AGENTSEAT_STATE_DIR"])
    key = next((state / "keys").iterdir())
    decoy = tmp_path / "notes.txt"
    decoy.symlink_to(state / "inbox.db")
    async with serve(env, tmp_path) as served:
        before = len(await chat_messages(sandbox, chat_id))
        for path in (str(state / "inbox.db"), str(key), str(decoy), f"{tmp_path}/../{tmp_path.name}/agent/inbox.db"):
            refused = await served.call("reply_in_chat", chat_id=chat_id, text="here", files=[path])
            assert "refused" in _error(refused) and "state directory" in _error(refused)
        assert len(await chat_messages(sandbox, chat_id)) == before


async def test_a_file_link_off_graph_and_sharepoint_is_not_fetched(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    posted = await post_dm(sandbox, sponsor, agent, "open this")
    chat_id, message_id = posted["chat_id"], posted["message_id"]

    def forge() -> None:  # a message whose file link points elsewhere, as a forged or foreign client could send
        message = next(m for m in sandbox.tenant.messages[chat_id] if m.id == message_id)
        message.content_type, message.content = "html", 'open this <attachment id="f1"></attachment>'
        message.attachments.append({"id": "f1", "contentType": "reference", "name": "invoice.pdf", "content": None,
                                    "contentUrl": "https://files.evil.test/invoice.pdf", "thumbnailUrl": None})

    sandbox.portal.call(forge)  # type: ignore[attr-defined]
    async with serve(env, tmp_path) as served:
        refused = await served.call("download_attachment", chat_id=chat_id, message_id=message_id, attachment_id="f1")
        assert "refused to fetch a file link from files.evil.test" in _error(refused)


async def test_files_sent_to_the_agent_are_listed_and_opened(sandbox: Sandbox, env: dict[str, str],
                                                             tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    photo = png(seed=3)
    async with serve(env, tmp_path) as served:
        status, posted = await _control(sandbox, "POST", "/_sandbox/messages", {
            "from": sponsor, "to": agent, "text": "two files",
            "files": [{"name": "notes, v2; final [x].pdf", "data": base64.b64encode(b"%PDF-1.7 tiny").decode()},
                      {"name": "photo.png", "data": base64.b64encode(photo).decode()}]})
        assert status == 201, posted
        push = (await served.wait_pushes(1))[0]
        assert push.meta is not None and push.meta["attachment_count"] == "2"
        pairs = [p.split(":") for p in push.meta["attachments"].split(",")]
        assert [name for _, name in pairs] == ["notes_ v2_ final _x_.pdf", "photo.png"]
        ids = {name: att_id for att_id, name in pairs}

        pdf = await served.call_json("download_attachment", chat_id=posted["chat_id"],
                                     message_id=posted["message_id"], attachment_id=ids["notes_ v2_ final _x_.pdf"])
        assert pdf["type"] == "file" and pdf["size"] == 13 and pdf["mime_type"] == "application/pdf"
        assert pdf["web_url"].startswith(sandbox.url)
        # Thirteen bytes are no PDF: the metadata comes back with why there is no text.
        assert pdf["text"] is None and "cannot read it" in pdf["note"]
        # An image sent as a file is fetched through the driveItem's /content redirect, and shown.
        result = await _call(served, "download_attachment", chat_id=posted["chat_id"],
                             message_id=posted["message_id"], attachment_id=ids["photo.png"])
        image = next(c for c in result.content if isinstance(c, types.ImageContent))
        assert base64.b64decode(image.data) == photo


async def test_a_file_in_a_group_chat_is_shared_with_every_member_and_no_one_else(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    grace, alan = _upn(sandbox, "colleague1"), _upn(sandbox, "colleague2")
    status, chat = await _control(sandbox, "POST", "/_sandbox/chats", {"members": [agent, sponsor, grace]})
    assert status == 201, chat
    (tmp_path / "plan.md").write_text("# plan\n")
    async with serve(env, tmp_path) as served:
        sent = await served.call_json("reply_in_chat", chat_id=chat["chat_id"], text="the plan",
                                      files=[str(tmp_path / "plan.md")])
    url = quote(sent["files"][0]["web_url"], safe="")
    for person, expected in ((sponsor, 200), (grace, 200), (alan, 403)):
        status, _ = await _control(sandbox, "GET", f"/_sandbox/files?url={url}&as={person}")
        assert status == expected, person


async def test_a_large_file_goes_up_in_an_upload_session_and_opens_whole(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor = _upn(sandbox, "sponsor")
    blob = bytes(range(256)) * (4 * 1024 * 4 + 17)  # just over 4 MiB: past the simple upload
    (tmp_path / "dump.bin").write_bytes(blob)
    async with serve(env, tmp_path) as served:
        sent = await served.call_json("send_teams_message", to=sponsor, text="the dump",
                                      files=[str(tmp_path / "dump.bin")])
    assert sent["files"][0]["size"] == len(blob)
    url = quote(sent["files"][0]["web_url"], safe="")
    status, opened = await _control(sandbox, "GET", f"/_sandbox/files?url={url}&as={sponsor}")
    assert status == 200 and opened == blob
    _, stats = await _control(sandbox, "GET", "/_sandbox/stats")
    routes = [r for r in stats["requests"] if "createUploadSession" in r or r.endswith(":/content")]
    assert routes and all("createUploadSession" in r for r in routes), stats["requests"]


async def test_a_channel_posts_and_replys_images_open_through_their_events(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    """A channel event's chat_id is the channel: its team and thread come from the event, so the
    post (and a reply in its thread) is read from the channel, not from a chat."""
    agent, sponsor = _upn(sandbox, "agent_user"), _upn(sandbox, "sponsor")
    status, team = await _control(sandbox, "POST", "/_sandbox/teams", {"name": "Ops", "members": [agent, sponsor]})
    assert status == 201, team
    team_id, channel_id = team["team_id"], team["channel_id"]
    settings = settings_from_env(env)
    shots = [png(seed=21), png(seed=22)]

    def with_image(data: bytes) -> dict[str, Any]:
        return {"body": {"contentType": "html", "content": 'see <img src="../hostedContents/1/$value">'},
                "hostedContents": [{"@microsoft.graph.temporaryId": "1", "contentType": "image/png",
                                    "contentBytes": base64.b64encode(data).decode()}]}

    base = f"/teams/{team_id}/channels/{quote(channel_id, safe=':@.')}/messages"
    async with GraphClient(settings, provider_for(settings)) as graph:
        post = await graph.post(base, with_image(shots[0]))
        reply = await graph.post(f"{base}/{post['id']}/replies", with_image(shots[1]))
    # The channel runtime stores channel events this way (runtime/events.py, kind `channel`).
    with Inbox(Path(env["AGENTSEAT_STATE_DIR"]) / "inbox.db") as inbox:
        inbox.append(Event.channel(team_id=team_id, channel_id=channel_id, message_id=m["id"], thread_id=thread,
                                   sender_id="u", sender_upn="", sender_name="", trust="colleague", text="see",
                                   created_at=m["createdDateTime"], source="poll",
                                   attachments=attachments_json(listing(m)))
                     for m, thread in ((post, ""), (reply, post["id"])))
    async with serve(env, tmp_path) as served:
        for message, shot in zip((post, reply), shots, strict=True):
            image_id = listing(message)[0]["id"]
            result = await _call(served, "download_attachment", chat_id=channel_id, message_id=message["id"],
                                 attachment_id=image_id)
            image = next(c for c in result.content if isinstance(c, types.ImageContent))
            assert base64.b64decode(image.data) == shot
