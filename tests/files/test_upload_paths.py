"""files/writing.py `upload` over real HTTPS: a small file is one PUT with the conflict behaviour, a
larger one an upload session; a session that expires mid-way is started again once, and a second
expiry is an error; a 409 says how to keep both files."""

from __future__ import annotations

import pytest
from aiohttp import web

from agentseat.config import Settings
from agentseat.errors import GraphError, ToolInputError
from agentseat.files.writing import upload
from agentseat.graph.client import GraphClient
from agentseat.graph.upload_session import SessionGone
from agentseat.sandbox.app import Sandbox
from tests.graph.test_client import FixedToken, https_server

MB = 1024 * 1024


async def _read(offset: int, length: int) -> bytes:
    return b"a" * length


async def test_small_files_are_one_put_and_large_ones_a_session_started_again_after_expiry(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    seen: list[str] = []
    sessions = iter(["s1", "s2"])

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path} {request.query_string}".strip())
        if request.path.endswith(":/content"):
            return web.json_response({"id": "small", "size": len(await request.read())}, status=201)
        if request.path.endswith(":/createUploadSession"):
            assert (await request.json())["item"] == {"@microsoft.graph.conflictBehavior": "rename"}
            return web.json_response({"uploadUrl": f"https://{request.host}/upload/{next(sessions)}"})
        await request.content.read()  # past aiohttp's 1 MiB body cap
        if request.path.endswith("/s1"):
            return web.json_response({"error": {"code": "itemNotFound"}}, status=404)
        return web.json_response({"id": "large", "size": 5 * MB}, status=201)

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url, "simple_upload_max_mb": 4.0})
        async with GraphClient(settings, FixedToken()) as graph:
            small = await upload(graph, settings, "/me/drive", "notes/a b.md", 10, _read, "fail")
            large = await upload(graph, settings, "/me/drive", "big.bin", 5 * MB, _read, "rename")
    assert small == {"id": "small", "size": 10} and large["id"] == "large"
    assert seen[0] == "PUT /v1.0/me/drive/root:/notes/a b.md:/content @microsoft.graph.conflictBehavior=fail"  # path decoded
    assert [s.split()[1] for s in seen[1:]] == ["/v1.0/me/drive/root:/big.bin:/createUploadSession", "/upload/s1",
                                                "/v1.0/me/drive/root:/big.bin:/createUploadSession", "/upload/s2"]


async def test_a_session_that_expires_twice_and_a_name_taken_are_errors(sandbox: Sandbox,
                                                                       agent_settings: Settings) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith(":/content"):
            return web.json_response({"error": {"code": "nameAlreadyExists", "message": "exists"}}, status=409)
        if request.path.endswith(":/createUploadSession"):
            return web.json_response({"uploadUrl": f"https://{request.host}/upload/s"})
        await request.content.read()
        return web.json_response({"error": {"code": "itemNotFound"}}, status=404)

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken()) as graph:
            with pytest.raises(SessionGone):
                await upload(graph, settings, "/me/drive", "big.bin", 5 * MB, _read, "fail")
            with pytest.raises(ToolInputError) as caught:
                await upload(graph, settings, "/me/drive", "a.md", 3, _read, "fail")
    assert "already exists at 'a.md'" in caught.value.message and "rename" in (caught.value.hint or "")
    assert isinstance(SessionGone("x", status=404), GraphError)
