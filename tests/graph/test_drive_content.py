"""Fetching and uploading file content (graph/drive.py, graph/preauth.py) over real HTTPS: the token
goes to the Graph host only, never to a download redirect's target or an upload session's URL;
a redirect or upload URL off the Graph and SharePoint hosts is refused before any connection;
and a body over the limit is refused while it is read."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiohttp import web

from agentseat.config import Settings
from agentseat.errors import GraphError
from agentseat.graph import drive
from agentseat.graph.client import GraphClient
from agentseat.graph.content import get_content
from agentseat.sandbox.app import Sandbox
from tests.graph.test_client import FixedToken, counting_listener, https_server

LINK = "https://contoso-my.sharepoint.com/personal/ada/Documents/Microsoft%20Teams%20Chat%20Files/shot.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 100


async def test_a_download_redirect_is_followed_without_the_token(sandbox: Sandbox, agent_settings: Settings) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen[request.path] = request.headers.get("Authorization", "")
        if request.path.endswith("/driveItem/content"):
            raise web.HTTPFound(f"https://{request.host}/download/abc?tempauth=x")
        return web.Response(body=PNG, content_type="image/png")

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken("graph-only")) as graph:
            data = await drive.shared_content(graph, settings, LINK, 1024)
    assert data == PNG
    assert seen == {f"/v1.0/shares/{drive.share_id(LINK)}/driveItem/content": "Bearer graph-only", "/download/abc": ""}


async def test_a_redirect_off_graph_and_sharepoint_is_refused_and_nothing_reaches_it(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    async with counting_listener() as (port, accepted):
        async def handler(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"https://127.0.0.1:{port}/steal")

        async with https_server(sandbox, handler) as url:
            settings = agent_settings.model_copy(update={"graph_url": url})
            async with GraphClient(settings, FixedToken()) as graph:
                with pytest.raises(GraphError) as caught:
                    await drive.shared_content(graph, settings, LINK, 1024)
        await anyio.sleep(0.05)  # a connection attempt, had there been one, is accepted by now
    assert caught.value.code == "ForeignHost" and "a download redirect" in caught.value.message
    assert accepted == []


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_over_the_limit_is_refused(sandbox: Sandbox, agent_settings: Settings, declared: bool) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if declared:
            return web.Response(body=b"x" * 5000, content_type="image/png")
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken()) as graph:
            with pytest.raises(GraphError) as caught:
                await graph.request("GET", "/chats/c/messages/m/hostedContents/h/$value", raw=4096)
            small = await graph.request("GET", "/chats/c/messages/m/hostedContents/h/$value", raw=5000)
    assert caught.value.code == "TooLarge"
    assert small.body == b"x" * 5000


async def test_a_large_file_goes_up_in_ranges_without_the_token(sandbox: Sandbox, agent_settings: Settings) -> None:
    size = drive.SIMPLE_UPLOAD_MAX + drive.CHUNK + 10
    blob = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    got = bytearray()
    puts: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith(":/createUploadSession"):
            assert request.headers["Authorization"] == "Bearer graph-only"
            body = await request.json()
            assert body["item"]["name"] == "big.bin"
            return web.json_response({"uploadUrl": f"https://{request.host}/upload/s1"})
        puts.append((request.headers.get("Authorization", ""), request.headers["Content-Range"]))
        got.extend(await request.content.read())  # past aiohttp's 1 MiB body cap
        if len(got) < size:
            return web.json_response({"nextExpectedRanges": [f"{len(got)}-"]}, status=202)
        return web.json_response({"id": "item1", "name": "big.bin", "webUrl": "https://x", "eTag": "\"{A},1\""},
                                 status=201)

    async def read(offset: int, length: int) -> bytes:
        return blob[offset:offset + length]

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken("graph-only")) as graph:
            item = await drive.upload(graph, settings, "big.bin", size, read)
    assert item["id"] == "item1" and bytes(got) == blob
    assert [auth for auth, _ in puts] == ["", "", ""]
    assert [r for _, r in puts] == [f"bytes 0-{drive.CHUNK - 1}/{size}",
                                    f"bytes {drive.CHUNK}-{2 * drive.CHUNK - 1}/{size}",
                                    f"bytes {2 * drive.CHUNK}-{size - 1}/{size}"]


async def test_an_upload_url_off_graph_and_sharepoint_is_refused(sandbox: Sandbox, agent_settings: Settings) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"uploadUrl": "https://uploads.evil.test/s1"})

    async def read(offset: int, length: int) -> Any:
        raise AssertionError("nothing is read for a refused session")

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken()) as graph:
            with pytest.raises(GraphError) as caught:
                await drive.upload(graph, settings, "big.bin", drive.SIMPLE_UPLOAD_MAX + 1, read)
    assert caught.value.code == "ForeignHost"


async def test_a_hosted_image_redirect_is_checked_too(sandbox: Sandbox, agent_settings: Settings) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Authorization", "")))
        if request.path.endswith("/$value"):
            raise web.HTTPFound("/blob/1")  # relative: on the Graph host
        return web.Response(body=PNG, content_type="image/png")

    async with https_server(sandbox, handler) as url:
        settings = agent_settings.model_copy(update={"graph_url": url})
        async with GraphClient(settings, FixedToken("graph-only")) as graph:
            data, kind = await get_content(graph, settings, "/chats/c/messages/m/hostedContents/h/$value", 1024)
    assert (data, kind) == (PNG, "image/png")
    assert seen == [("/v1.0/chats/c/messages/m/hostedContents/h/$value", "Bearer graph-only"), ("/blob/1", "")]
