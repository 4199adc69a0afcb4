"""Upload sessions resume (graph/upload_session.py) over real HTTPS: after a 5xx or a connection
cut mid-range, the client asks the session where to go on (nextExpectedRanges) and sends from
there; ranges are multiples of 320 KiB and stream from the reader in pieces; an expired session
(404) is reported, not retried."""

from __future__ import annotations

import pytest
from aiohttp import web

from agentseat.config import Settings
from agentseat.graph import upload_session
from agentseat.sandbox.app import Sandbox
from tests.graph.test_client import https_server

UNIT = upload_session.UNIT


def _blob(size: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(size))


async def test_a_failed_range_is_resent_from_where_the_session_says(sandbox: Sandbox, agent_settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_session, "PIECE", 64 * 1024)
    size = 5 * UNIT + 123
    blob = _blob(size)
    got = bytearray()
    log: list[str] = []
    faults = ["ok", "503", "ok", "cut"]  # the second range fails, the third is cut after half of it arrives

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            log.append("GET")
            return web.json_response({"nextExpectedRanges": [f"{len(got)}-"]})
        log.append(request.headers["Content-Range"])
        fault = faults.pop(0) if faults else "ok"
        if fault == "503":
            return web.json_response({"error": {"code": "serviceNotAvailable"}}, status=503)
        if fault == "cut":
            await request.content.read(UNIT // 2)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        start = int(request.headers["Content-Range"].split()[1].split("-")[0])
        assert start == len(got)
        got.extend(await request.content.read())
        if len(got) < size:
            return web.json_response({"nextExpectedRanges": [f"{len(got)}-"]}, status=202)
        return web.json_response({"id": "item1", "size": size}, status=201)

    reads: list[int] = []

    async def read(offset: int, length: int) -> bytes:
        reads.append(length)
        return blob[offset:offset + length]

    progress: list[int] = []

    async def note(sent: int, total: int) -> None:
        progress.append(sent)

    async with https_server(sandbox, handler) as url:
        item = await upload_session.send(agent_settings, f"{url}/upload/s1", size, read, chunk=2 * UNIT,
                                         progress=note)
    assert item == {"id": "item1", "size": size} and bytes(got) == blob
    assert log == [f"bytes 0-{2 * UNIT - 1}/{size}", f"bytes {2 * UNIT}-{4 * UNIT - 1}/{size}", "GET",
                   f"bytes {2 * UNIT}-{4 * UNIT - 1}/{size}", f"bytes {4 * UNIT}-{size - 1}/{size}", "GET",
                   f"bytes {4 * UNIT}-{size - 1}/{size}"]
    assert progress == [2 * UNIT, 4 * UNIT]
    assert max(reads) == 64 * 1024  # a range is read (and held) a piece at a time, never whole


async def test_an_expired_session_is_reported_so_the_caller_starts_again(sandbox: Sandbox,
                                                                        agent_settings: Settings) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": "itemNotFound"}}, status=404)

    async def read(offset: int, length: int) -> bytes:
        return b"x" * length

    async with https_server(sandbox, handler) as url:
        with pytest.raises(upload_session.SessionGone):
            await upload_session.send(agent_settings, f"{url}/upload/s1", 3 * UNIT, read, chunk=UNIT)


def test_ranges_are_multiples_of_320_kib() -> None:
    assert upload_session.CHUNK % UNIT == 0 and 5 * 1024 * 1024 <= upload_session.CHUNK <= 10 * 1024 * 1024
