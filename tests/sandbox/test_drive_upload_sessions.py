"""Upload sessions over real HTTPS: injected faults mid-way and resuming, byte-range errors, commit, expiry."""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
import pytest
from yarl import URL

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.drive import sessions
from tests.sandbox._drive import AGENT, put_file, token
from tests.sandbox._files import raw_call
from tests.sandbox._graph import call

UNIT = sessions.FRAGMENT_UNIT


async def _session(sb: Sandbox, name: str, **body: Any) -> dict[str, Any]:
    status, session, _ = await call(sb, "POST", f"/v1.0/me/drive/root:/Uploads/{name}:/createUploadSession",
                                    token(sb, AGENT), body=body or None)
    assert status == 200, session
    return dict(session)


async def _put(sb: Sandbox, url: str, data: bytes, start: int, total: int) -> tuple[int, Any]:
    end = start + len(data) - 1
    status, body, _ = await raw_call(sb, "PUT", url, data=data[:], headers={"Content-Range": f"bytes {start}-{end}/{total}"})
    return status, json.loads(body) if body else None


def _next_start(state: dict[str, Any]) -> int:
    return int(state["nextExpectedRanges"][0].split("-")[0])


async def test_an_upload_broken_mid_way_resumes_from_next_expected_ranges(sandbox: Sandbox) -> None:
    data = os.urandom(6 * UNIT + 1234)
    total, chunk = len(data), 2 * UNIT
    session = await _session(sandbox, "big.bin", item={"@microsoft.graph.conflictBehavior": "fail"})
    url = session["uploadUrl"]
    status, _ = await _put(sandbox, url, data[:chunk], 0, total)
    assert status == 202
    # The next fragment PUTs fail: first a 503, then the connection drops half-way.
    status, body, _ = await call(sandbox, "POST", "/_sandbox/faults", body={"uploads": {"count": 1, "status": 503}})
    assert status == 200 and body["uploads"]["count"] == 1
    status, body = await _put(sandbox, url, data[chunk:2 * chunk], chunk, total)
    assert status == 503 and body["error"]["code"] == "serviceNotAvailable"
    # (aiohttp retries an idempotent PUT on a dropped connection by itself, so every try must drop.)
    status, body, _ = await call(sandbox, "POST", "/_sandbox/faults", body={"uploads": {"count": 5, "drop": True}})
    assert status == 200
    with pytest.raises(aiohttp.ClientError):
        await _put(sandbox, url, data[chunk:2 * chunk], chunk, total)
    status, _, _ = await call(sandbox, "DELETE", "/_sandbox/faults")
    assert status == 200
    # Nothing of the broken fragments was kept: GET on the upload URL says where to go on.
    status, state, _ = await call(sandbox, "GET", url)
    assert status == 200 and state["nextExpectedRanges"] == [f"{chunk}-"]
    start = _next_start(state)
    while start < total:
        piece = data[start:start + chunk]
        status, body = await _put(sandbox, url, piece, start, total)
        assert status in (201, 202), body
        start += len(piece)
    assert status == 201 and body["size"] == total
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/me/drive/items/{body['id']}/content",
                                        token(sandbox, AGENT))
    status, got, _ = await raw_call(sandbox, "GET", headers["Location"])
    assert got == data


async def test_overlaps_gaps_and_bad_sizes_are_refused_with_onedrive_codes(sandbox: Sandbox) -> None:
    data = os.urandom(3 * UNIT)
    total = len(data)
    url = (await _session(sandbox, "ranges.bin"))["uploadUrl"]
    status, _ = await _put(sandbox, url, data[:UNIT], 0, total)
    assert status == 202
    cases = [(data[:UNIT], 0, 416, "fragmentOverlap"), (data[UNIT // 2:UNIT + UNIT // 2], UNIT // 2, 416,
                                                         "fragmentOverlap"),
             (data[2 * UNIT:], 2 * UNIT, 416, "fragmentOutOfOrder"), (data[UNIT:UNIT + 1000], UNIT, 400, "invalidRange")]
    for piece, start, code, inner in cases:
        status, body = await _put(sandbox, url, piece, start, total)
        assert status == code and body["error"]["innerError"]["code"] == inner, (start, body)
    status, body = await _put(sandbox, url, data[UNIT:2 * UNIT], UNIT, total + 1)
    assert status == 400 and body["error"]["innerError"]["code"] == "fragmentLengthMismatch"
    status, body, _ = await raw_call(sandbox, "PUT", url, data=data[UNIT:2 * UNIT], headers={"Content-Range": "bytes=0-"})
    assert status == 400
    status, state, _ = await call(sandbox, "GET", url)
    assert state["nextExpectedRanges"] == [f"{UNIT}-"]  # none of the refusals moved it


async def test_commit_fails_with_409_when_the_name_was_taken_meanwhile(sandbox: Sandbox) -> None:
    url = (await _session(sandbox, "report.txt"))["uploadUrl"]  # conflictBehavior defaults to fail
    await put_file(sandbox, AGENT, "Uploads/report.txt", b"someone was faster")
    status, body = await _put(sandbox, url, b"mine", 0, 4)
    assert status == 409 and body["error"]["code"] == "nameAlreadyExists"
    # The session is kept: committed again under another name by a PUT naming it as the source.
    status, state, _ = await call(sandbox, "GET", url)
    assert status == 200 and state["nextExpectedRanges"] == []
    status, item, _ = await call(sandbox, "PUT", "/v1.0/me/drive/root:/Uploads", token(sandbox, AGENT), body={
        "name": "report.txt", "@microsoft.graph.conflictBehavior": "rename", "@microsoft.graph.sourceUrl": url})
    assert status == 201 and item["name"] == "report 1.txt" and item["size"] == 4
    status, _, _ = await call(sandbox, "GET", url)
    assert status == 404  # committed: the session is over
    status, body, _ = await call(sandbox, "POST", "/v1.0/me/drive/root:/Uploads/report.txt:/createUploadSession",
                                 token(sandbox, AGENT))
    assert status == 409 and body["error"]["code"] == "nameAlreadyExists"
    # With replace it goes through, and deferCommit waits for the zero-length POST.
    session = await _session(sandbox, "report.txt", item={"@microsoft.graph.conflictBehavior": "replace"},
                             deferCommit=True)
    status, body = await _put(sandbox, session["uploadUrl"], b"mine", 0, 4)
    assert status == 202 and body["nextExpectedRanges"] == []
    status, body, _ = await call(sandbox, "POST", session["uploadUrl"])
    assert status == 200 and body["size"] == 4 and body["name"] == "report.txt"


async def test_an_expired_session_is_404_and_its_bytes_are_gone(sandbox: Sandbox) -> None:
    session = await _session(sandbox, "late.bin")
    assert session["expirationDateTime"] > "2026"
    status, _ = await _put(sandbox, session["uploadUrl"], os.urandom(UNIT), 0, 2 * UNIT)
    assert status == 202
    status, _, _ = await call(sandbox, "POST", "/_sandbox/clock", body={"advance_seconds": sessions.SESSION_SECONDS + 1})
    for method in ("GET", "PUT"):
        status, body, _ = await raw_call(sandbox, method, session["uploadUrl"], data=b"x" if method == "PUT" else None,
                                         headers={"Content-Range": f"bytes {UNIT}-{UNIT}/{2 * UNIT}"})
        assert status == 404, body
        error = json.loads(body)["error"]
        assert error["code"] == "itemNotFound" and error["innerError"]["code"] == "uploadSessionNotFound"
    assert not list((sandbox.state_dir / "uploads").glob("*.part"))


async def test_a_large_upload_streams_through_in_fragments(sandbox: Sandbox) -> None:
    # 12 MiB in 5 MiB fragments (a multiple of 320 KiB): written to disk as it comes, one blob at the end.
    total, chunk = 12 * 1024 * 1024, 16 * UNIT
    block = os.urandom(UNIT)
    url = (await _session(sandbox, "large.bin"))["uploadUrl"]
    start = 0
    async with aiohttp.ClientSession() as http:
        while start < total:
            size = min(chunk, total - start)
            piece = (block * (size // UNIT + 1))[:size]
            async with http.put(URL(url, encoded=True), data=piece, ssl=sandbox.client_ssl_context(),
                                headers={"Content-Range": f"bytes {start}-{start + size - 1}/{total}"}) as resp:
                assert resp.status in (201, 202), await resp.text()
                last = await resp.json()
            start += size
    assert last["size"] == total and last["file"]["mimeType"] == "application/octet-stream"
