"""Files end to end: `agentseat serve` on the sandbox, driven by mcp's real stdio client.

A sponsor shares a Word document and the agent lists it, resolves its link and reads its
headings and table; a PDF and a workbook read as text, an image as image content; a markdown note written as .docx reads
back; a 30 MB upload goes through an upload session, a fault is injected mid-way and it
resumes; share_file is refused until a sponsor asks (and Graph confirms it), and a sponsor can
always be given a file; a deny-listed site is refused for reading, writing and listing; a file
attached in chat is read by its attachment id, and download_attachment returns its text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import io
from pathlib import Path
from typing import Any

import anyio
import docx
import mcp_types as types
import openpyxl
import pytest

from agentseat.sandbox.app import Sandbox
from tests.documents.build import pdf
from tests.tools._mcp import Served, serve
from tests.tools.test_attachments_e2e import _control, _upn, png


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _error(result: types.CallToolResult) -> str:
    assert result.is_error, result.content[0].text  # type: ignore[union-attr]
    return result.content[0].text  # type: ignore[union-attr,no-any-return]


def report_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly review", level=1)
    document.add_paragraph("Revenue grew in every region.")
    document.add_heading("Numbers", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, (region, value) in zip(table.rows, (("Region", "Revenue"), ("North", "412"), ("South", "389")),
                                    strict=True):
        row.cells[0].text, row.cells[1].text = region, value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def budget_xlsx() -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Budget"
    ws.append(["Item", "Cost"])
    ws.append(["Laptops", 12000])
    ws.append(["Travel", 3400])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def put_file(sandbox: Sandbox, owner: str, path: str, data: bytes, share_with: list[str] | None = None
                   ) -> dict[str, Any]:
    body: dict[str, Any] = {"owner": owner, "path": path, "content_base64": base64.b64encode(data).decode()}
    if share_with is not None:
        body["share_with"] = share_with
    status, made = await _control(sandbox, "POST", "/_sandbox/files", body)
    assert status == 201, made
    return made  # type: ignore[no-any-return]


async def stored(sandbox: Sandbox, ref: str) -> dict[str, Any]:
    status, body = await _control(sandbox, "GET", f"/_sandbox/files/{ref}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_a_sponsor_shares_a_word_document_and_the_agent_reads_its_headings_and_table(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    made = await put_file(sandbox, sponsor, "Reviews/Q3 review.docx", report_docx(), share_with=[agent])
    ref = f"{made['drive_id']}/{made['item_id']}"
    async with serve(env, tmp_path) as served:
        shared = await served.call_json("list_files", scope="shared")
        assert [(f["ref"], f["name"]) for f in shared["files"]] == [(ref, "Q3 review.docx")]
        assert (await served.call_json("list_files", scope="mine"))["files"] == []
        found = await served.call_json("list_files", scope="shared", query="review")
        assert [f["ref"] for f in found["files"]] == [ref]

        resolved = await served.call_json("resolve_file_url", url=made["sharing_url"])
        assert resolved["ref"] == ref and resolved["name"] == "Q3 review.docx"
        for how in (ref, made["sharing_url"]):
            read = await served.call_json("read_file", ref=how)
            text = read["text"]
            assert text.startswith('<external_content source="file:') and 'trust="sponsor"' in text
            assert "# Quarterly review" in text and "## Numbers" in text
            assert "| Region | Revenue |" in text and "| North | 412 |" in text and "| South | 389 |" in text
            assert read["kind"] == "docx" and read["ref"] == ref


async def test_a_pdf_and_a_workbook_are_read_as_text(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    made_pdf = await put_file(sandbox, sponsor, "contract.pdf",
                              pdf(tmp_path / "c.pdf", ["Clause 1: the term is 24 months", "Clause 2: fees"]).read_bytes(),
                              share_with=[agent])
    made_xlsx = await put_file(sandbox, sponsor, "budget.xlsx", budget_xlsx(), share_with=[agent])
    made_log = await put_file(sandbox, sponsor, "huge.log", b"line of log\n" * 4000, share_with=[agent])
    chart = png(seed=9)
    made_png = await put_file(sandbox, sponsor, "chart.png", chart, share_with=[agent])
    async with serve({**env, "AGENTSEAT_FILE_READ_MAX_MB": "0.03"}, tmp_path) as served:
        read_pdf = await served.call_json("read_file", ref=f"{made_pdf['drive_id']}/{made_pdf['item_id']}")
        assert read_pdf["kind"] == "pdf" and read_pdf["pages"] == 2
        assert "the term is 24 months" in read_pdf["text"] and "Clause 2: fees" in read_pdf["text"]
        read_xlsx = await served.call_json("read_file", ref=made_xlsx["sharing_url"])
        assert read_xlsx["kind"] == "xlsx" and read_xlsx["sheets"] == 1
        assert "Budget" in read_xlsx["text"] and "| Laptops | 12000 |" in read_xlsx["text"]
        too_big = await served.call("read_file", ref=f"{made_log['drive_id']}/{made_log['item_id']}")
        assert "'huge.log' is 0.0458 MB, over the 0.03 MB read limit" in _error(too_big)
        assert "line of log" not in _error(too_big)
        shown = await served.call("read_file", ref=made_png["sharing_url"])
        image = next(c for c in shown.content if isinstance(c, types.ImageContent))
        assert image.mime_type == "image/png" and base64.b64decode(image.data) == chart


async def test_a_markdown_note_written_as_word_reads_back(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    note = "# Plan\n\nShip the **files** tools.\n\n- read\n- write\n\n| Step | Owner |\n|---|---|\n| Build | Ada |\n"
    async with serve(env, tmp_path) as served:
        written = await served.call_json("write_file", path="notes/plan.md", content=note, as_docx=True)
        assert written["name"] == "plan.docx" and written["path"] == "notes/plan.docx"
        raw = base64.b64decode((await stored(sandbox, written["ref"]))["content_base64"])
        assert raw.startswith(b"PK") and docx.Document(io.BytesIO(raw)).paragraphs[0].style.name == "Heading 1"
        read = await served.call_json("read_file", ref=written["ref"])
        assert 'trust="agent"' in read["text"] and "# Plan" in read["text"] and "- read" in read["text"]
        assert "| Build | Ada |" in read["text"]

        again = await served.call("write_file", path="notes/plan.docx", content="# Other", as_docx=True)
        assert "already exists" in _error(again) and "replace" in _error(again)
        renamed = await served.call_json("write_file", path="notes/plan.docx", content="# Other", as_docx=True,
                                         conflict="rename")
        assert renamed["ref"] != written["ref"] and renamed["name"] != "plan.docx"
        text = await served.call_json("write_file", path="notes/todo.md", content="- [ ] review\n")
        assert base64.b64decode((await stored(sandbox, text["ref"]))["content_base64"]) == b"- [ ] review\n"
        recent = await served.call_json("list_files", scope="recent")
        assert [f["name"] for f in recent["files"]][:1] == ["todo.md"]
        mine = await served.call_json("list_files", scope="mine", query="filetype:docx")
        assert {f["ref"] for f in mine["files"]} == {written["ref"], renamed["ref"]}


async def test_a_30_mb_upload_resumes_after_a_fault_mid_way(sandbox: Sandbox, env: dict[str, str],
                                                            tmp_path: Path) -> None:
    blob = hashlib.sha256(b"seed").digest() * (30 * 1024 * 1024 // 32)
    (tmp_path / "dataset.bin").write_bytes(blob)

    async def arm_fault_mid_way() -> None:
        # Once the first range has landed, the next fragment PUT fails with a 503.
        with anyio.fail_after(60):
            while not any(s.received > 0 for s in sandbox.tenant.upload_sessions.values()):
                await anyio.sleep(0.002)
        status, _ = await _control(sandbox, "POST", "/_sandbox/faults", {"uploads": {"count": 1, "status": 503}})
        assert status == 200

    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with serve(env, tmp_path) as served:
        async with anyio.create_task_group() as tg:
            tg.start_soon(arm_fault_mid_way)
            # As a host does: the call carries a progress token, so the upload reports per range.
            with anyio.fail_after(120):
                result = await served.session.call_tool(
                    "upload_file", {"local_path": str(tmp_path / "dataset.bin"), "path": "data/dataset.bin"},
                    progress_callback=on_progress)
    assert not result.is_error, result.content
    uploaded = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert uploaded["size"] == len(blob)
    # One notification per range that landed, rising, each with the total and a readable line.
    assert len(progress) >= 2 and all(total == len(blob) for _, total, _ in progress)
    assert [done for done, _, _ in progress] == sorted(done for done, _, _ in progress)
    assert progress[-1][2] is not None and "MB" in progress[-1][2]
    assert base64.b64decode((await stored(sandbox, uploaded["ref"]))["content_base64"]) == blob
    assert sandbox.faults.uploads is not None and sandbox.faults.uploads.count == 0  # the fault fired
    served_log = (tmp_path / "serve.log").read_text()
    assert "upload_range_retry" in served_log and "upload_progress" in served_log
    _, stats = await _control(sandbox, "GET", "/_sandbox/stats")
    assert any("createUploadSession" in r for r in stats["requests"])


async def test_share_file_needs_a_sponsor_or_a_sponsors_request_confirmed_in_graph(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    grace, alan = _upn(sandbox, "colleague1"), _upn(sandbox, "colleague2")
    status, chat = await _control(sandbox, "POST", "/_sandbox/chats", {"members": [agent, sponsor, grace]})
    assert status == 201, chat
    chat_id = chat["chat_id"]

    async def say(sender: str, text: str) -> None:
        status, posted = await _control(sandbox, "POST", "/_sandbox/messages",
                                        {"from": sender, "chat_id": chat_id, "text": text})
        assert status == 201, posted

    async def permissions(ref: str) -> set[str]:
        perms = (await stored(sandbox, ref))["permissions"]
        return {str(((p.get("grantedToV2") or {}).get("user") or {}).get("email") or "").lower() for p in perms}

    # Everyone in the tenant reaches the agent, so a colleague's message is an event too (and is not a request).
    async with serve({**env, "AGENTSEAT_INBOUND_POLICY": "tenant"}, tmp_path) as served:
        written = await served.call_json("write_file", path="plan.md", content="# plan\n")
        ref = written["ref"]
        refused = await served.call("share_file", ref=ref, recipient=alan)
        assert "refused" in _error(refused) and "not a sponsor" in _error(refused)
        await say(grace, f"share plan.md with {alan} please")
        await _wait_events(served, chat_id, 1)
        refused = await served.call("share_file", ref=ref, recipient=alan, chat_id=chat_id)
        assert "refused" in _error(refused)
        await say(sponsor, f"please share the plan with {alan}")
        await _wait_events(served, chat_id, 2)
        refused = await served.call("share_file", ref=ref, recipient=grace, chat_id=chat_id)
        assert "does not name the recipient" in _error(refused)
        assert alan.lower() not in await permissions(ref)

        shared = await served.call_json("share_file", ref=ref, recipient=alan, chat_id=chat_id, role="write")
        assert shared["shared"] and shared["allowed_by"] == "sponsor_request" and shared["role"] == "write"
        assert alan.lower() in await permissions(ref)
        to_sponsor = await served.call_json("share_file", ref=ref, recipient=sponsor)
        assert to_sponsor["allowed_by"] == "sponsor"
        assert {alan.lower(), sponsor.lower()} <= await permissions(ref)
        assert grace.lower() not in await permissions(ref)


async def _wait_events(served: Served, chat_id: str, count: int) -> None:
    """Until the inbox holds `count` events from `chat_id` (stored, pushed or not)."""
    with anyio.fail_after(60):
        while True:
            events = (await served.call_json("read_events", since=0))["events"]
            if sum(e.get("chat_id") == chat_id for e in events) >= count:
                return
            await anyio.sleep(0.1)


async def test_a_deny_listed_site_is_refused_for_reading_writing_and_listing(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    status, legal = await _control(sandbox, "POST", "/_sandbox/sites", {"name": "legal", "members": [sponsor, agent]})
    assert status == 201, legal
    status, team = await _control(sandbox, "POST", "/_sandbox/sites", {"name": "team", "members": [sponsor, agent]})
    assert status == 201, team
    secret = await put_file(sandbox, "legal", "contracts/nda.txt", b"confidential terms\n")
    open_file = await put_file(sandbox, "team", "notes.txt", b"team notes\n")
    for n, deny in enumerate((legal["site_id"], legal["web_url"])):
        async with serve({**env, "AGENTSEAT_FILE_DENY_SITES": f"https://elsewhere.sharepoint.com/sites/x,{deny}"},
                         tmp_path) as served:
            for ref in (f"{secret['drive_id']}/{secret['item_id']}", secret["web_url"]):
                refused = await served.call("read_file", ref=ref)
                assert "AGENTSEAT_FILE_DENY_SITES" in _error(refused) and "confidential" not in _error(refused)
            for site in (legal["web_url"], legal["site_id"]):
                refused = await served.call("write_file", path="x.md", content="x", target="sharepoint", site=site)
                assert "AGENTSEAT_FILE_DENY_SITES" in _error(refused)
            names = {f["name"] for f in (await served.call_json("list_files", scope="shared"))["files"]}
            assert "notes.txt" in names and "nda.txt" not in names
            read = await served.call_json("read_file", ref=f"{open_file['drive_id']}/{open_file['item_id']}")
            assert "team notes" in read["text"]
            written = await served.call_json("write_file", path=f"from-agent-{n}.md", content="hello team",
                                             target="sharepoint", site=team["web_url"])
            assert written["ref"].startswith(team["drive_id"] + "/")
            assert base64.b64decode((await stored(sandbox, written["ref"]))["content_base64"]) == b"hello team"
            replaced = await served.call_json("write_file", path=f"from-agent-{n}.md", content="again",
                                              target="sharepoint", site=team["site_id"], conflict="replace")
            assert replaced["ref"] == written["ref"]


async def test_a_word_document_attached_in_chat_is_read_by_its_attachment_id(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        status, posted = await _control(sandbox, "POST", "/_sandbox/messages", {
            "from": sponsor, "to": agent, "text": "the review",
            "files": [{"name": "review.docx", "data": base64.b64encode(report_docx()).decode()}]})
        assert status == 201, posted
        push = (await served.wait_pushes(1))[0]
        assert push.meta is not None
        attachment_id = push.meta["attachments"].partition(":")[0]
        chat_id, message_id = posted["chat_id"], posted["message_id"]

        downloaded = await served.call_json("download_attachment", chat_id=chat_id, message_id=message_id,
                                            attachment_id=attachment_id)
        assert downloaded["kind"] == "docx" and "| North | 412 |" in downloaded["text"]
        assert downloaded["text"].startswith("<external_content") and downloaded["from"]
        for ref in (attachment_id, f"{chat_id}/{message_id}/{attachment_id}"):
            read = await served.call_json("read_file", ref=ref)
            assert "# Quarterly review" in read["text"] and read["ref"].count("/") == 1
        missing = await served.call("read_file", ref="0f0f0f0f-aaaa-bbbb-cccc-000000000000")
        assert "no recent event lists an attachment" in _error(missing)


async def test_a_file_shared_by_a_sharing_notice_arrives_in_the_mail_events_attachments(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        status, made = await _control(sandbox, "POST", "/_sandbox/files", {
            "owner": sponsor, "path": "Reviews/Q3 review.docx", "share_with": [agent], "notify": True,
            "message": "please have a look", "content_base64": base64.b64encode(report_docx()).decode()})
        assert status == 201, made
        push = (await served.wait_pushes(1))[0]
        assert push.meta is not None and push.meta["kind"] == "mail"
        assert push.meta["attachment_count"] == "1"
        share_id, _, name = push.meta["attachments"].partition(":")
        assert share_id.startswith("u!") and name == "Q3 review.docx"
        assert "read_file" in push.content and "u!" not in push.content  # ids live in meta only

        events = await served.call_json("read_events")
        listed = [a for e in events["events"] for a in e.get("attachments", [])]
        assert [a["id"] for a in listed] == [share_id]
        read = await served.call_json("read_file", ref=share_id)
        assert read["ref"] == f"{made['drive_id']}/{made['item_id']}"
        assert "# Quarterly review" in read["text"] and "| North | 412 |" in read["text"]
        refused = await served.call("read_file", ref="u!bm90LWEtbGluaw")  # "not-a-link"
        assert "share id" in _error(refused)
