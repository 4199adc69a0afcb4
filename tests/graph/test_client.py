"""The Graph client (graph/client.py) over real HTTPS: retries, deadlines, 401s, paging, and the
rule that the bearer token goes to the Graph host only.

Retries are proved by the sandbox's request counters and the client's own log lines, never by
timing; the foreign-host tests run a loopback listener that counts every connection it gets.
"""

from __future__ import annotations

import io
import json
import random
import re
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web

from agentseat.config import Settings
from agentseat.errors import GraphError, ThrottledError
from agentseat.graph.client import GraphClient, parse_retry_after
from agentseat.identity.keys import KeyStore
from agentseat.identity.tokens import TokenProvider
from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox


def control(sb: Sandbox, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sb.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=sb.client_ssl_context()) as resp:  # noqa: S310 - loopback https
        return json.loads(resp.read() or b"null")


def provider_for(settings: Settings) -> TokenProvider:
    store = KeyStore(settings)
    return TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure("debug", "json", stream=buffer)
    yield buffer
    configure("debug")


def assert_no_secrets(text: str) -> None:
    assert text.strip() and not re.search(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+", text)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", text) and "test-passphrase-not-secret" not in text


def _events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    found = []
    for line in buffer.getvalue().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


def _seed_failing_first_only(rate: float) -> int:
    """A fault seed whose first draw faults and second does not: exactly one injected failure."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if rng.random() < rate <= rng.random():
            return seed
    raise AssertionError("no such seed")


class FixedToken:
    """A token source that always hands out the same (bad) token, counting invalidations."""

    def __init__(self, token: str = "not-a-valid-token") -> None:
        self.token = token
        self.invalidated = 0

    async def get(self, resource: str | None = None) -> str:
        return self.token

    async def invalidate(self, token: str) -> None:
        self.invalidated += 1


def test_retry_after_is_read_as_fractional_seconds() -> None:
    assert parse_retry_after("2.128") == 2.128
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None and parse_retry_after(None) is None


async def test_a_429_with_fractional_retry_after_is_retried_once_then_succeeds(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        await graph.get("/me")  # mint the token first: only the faulted call is counted
        seed = _seed_failing_first_only(0.5)
        control(sandbox, "POST", "/_sandbox/faults", {"graph": [{"route": "GET /me", "rate": 0.5, "status": 429,
                                                                 "retry_after": 2.128}], "seed": seed})
        control(sandbox, "DELETE", "/_sandbox/stats")
        me = await graph.get("/me")
    stats = control(sandbox, "GET", "/_sandbox/stats")
    assert me["id"] == sandbox.role("agent_user")
    assert stats["requests"] == {"GET /me": 2} and stats["throttled"] == {"fault 429": 1}
    retries = _events(logs, "graph_retry")
    assert [(r["status"], r["wait"], r["attempt"]) for r in retries] == [(429, 2.128, 1)]
    assert_no_secrets(logs.getvalue())


async def test_a_5xx_storm_past_the_deadline_ends_in_a_clear_error(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    settings = agent_settings.model_copy(update={"graph_deadline_seconds": 1.5})
    async with GraphClient(settings, provider_for(settings)) as graph:
        await graph.get("/me")
        control(sandbox, "POST", "/_sandbox/faults", {"graph": [{"route": "GET /me", "rate": 1.0, "status": 503}]})
        control(sandbox, "DELETE", "/_sandbox/stats")
        with pytest.raises(ThrottledError) as caught:
            await graph.get("/me")
    error = caught.value
    assert error.status == 503 and "GET /me -> 503" in error.message and "deadline" in error.message
    assert error.hint and "AGENTSEAT_GRAPH_DEADLINE_SECONDS" in error.hint
    sent = control(sandbox, "GET", "/_sandbox/stats")["requests"]["GET /me"]
    # Retried with backoff (no Retry-After), and given up on rather than retried forever.
    assert sent >= 2 and len(_events(logs, "graph_retry")) == sent - 1
    assert_no_secrets(logs.getvalue())


async def test_a_second_401_is_not_retried_again(sandbox: Sandbox, agent_settings: Settings) -> None:
    tokens = FixedToken()
    async with GraphClient(agent_settings, tokens) as graph:
        control(sandbox, "DELETE", "/_sandbox/stats")
        with pytest.raises(GraphError) as caught:
            await graph.get("/me")
    assert caught.value.status == 401 and "agentseat doctor" in str(caught.value)
    assert tokens.invalidated == 1
    assert control(sandbox, "GET", "/_sandbox/stats")["requests"] == {"GET /me": 2}


async def test_paging_follows_next_links_on_the_graph_host(sandbox: Sandbox, agent_settings: Settings) -> None:
    agent = sandbox.tenant.users[sandbox.role("agent_user")].upn
    for n in range(3):
        control(sandbox, "POST", "/_sandbox/mail", {"from": "ada@contoso.test", "to": agent, "subject": f"m{n}",
                                                    "body": "hello"})
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        pages = [page async for page in graph.pages("/me/messages", {"$top": "1", "$select": "subject"})]
    assert [[m["subject"] for m in page] for page in pages] == [["m2"], ["m1"], ["m0"]]


# --- the bearer token goes to the Graph host only ------------------------------------------------
@asynccontextmanager
async def counting_listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback TCP listener that counts every connection made to it (and answers none)."""
    accepted: list[int] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        accepted.append(1)
        await stream.aclose()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port, accepted
        tg.cancel_scope.cancel()


@asynccontextmanager
async def https_server(sandbox: Sandbox, handler: Any) -> AsyncIterator[str]:
    """A stand-in Graph host on https://localhost (with the sandbox's certificate); yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sandbox.pki.server_cert_path, sandbox.pki.server_key_path)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        yield f"https://localhost:{runner.addresses[0][1]}/v1.0"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def graph_host(sandbox: Sandbox, pages: dict[str, dict[str, Any]]) -> AsyncIterator[tuple[str, list[str]]]:
    """Serves fixed pages and records the Authorization header of each request."""
    seen: list[str] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(pages[request.path])

    async with https_server(sandbox, page) as url:
        yield url, seen


async def test_a_post_cut_off_after_sending_is_not_sent_twice(sandbox: Sandbox, agent_settings: Settings) -> None:
    hits: list[str] = []

    async def hang_up(request: web.Request) -> web.Response:
        hits.append(request.method)
        await request.read()
        assert request.transport is not None
        request.transport.close()  # the request arrived; the answer never will
        return web.Response()

    async with https_server(sandbox, hang_up) as url:
        settings = agent_settings.model_copy(update={"graph_url": url, "graph_deadline_seconds": 1.0})
        async with GraphClient(settings, FixedToken()) as graph:
            with pytest.raises(GraphError) as caught:
                await graph.post("/me/sendMail", {"message": {"subject": "once"}})
            assert hits == ["POST"], "a POST that may have been processed was sent again"
            assert caught.value.code == "Unreachable"
            hits.clear()
            with pytest.raises(GraphError):
                await graph.get("/me")
    assert len(hits) >= 2 and set(hits) == {"GET"}  # a GET is safe to repeat, until the deadline


async def test_a_next_link_to_another_host_is_refused_and_nothing_reaches_it(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    async with counting_listener() as (port, accepted):
        foreign = f"https://127.0.0.1:{port}/v1.0/me/messages?$skiptoken=steal"
        first = {"value": [{"id": "1"}], "@odata.nextLink": foreign}
        async with graph_host(sandbox, {"/v1.0/me/messages": first}) as (url, seen):
            settings = agent_settings.model_copy(update={"graph_url": url})
            got: list[list[dict[str, Any]]] = []
            async with GraphClient(settings, FixedToken("token-for-graph-only")) as graph:
                with pytest.raises(GraphError) as caught:
                    async for items in graph.pages("/me/messages"):
                        got.append(items)
                with pytest.raises(GraphError):
                    await graph.delta("/me/messages")
                with pytest.raises(GraphError):
                    await graph.get(foreign)
                with pytest.raises(GraphError):  # a downgrade to http on the Graph host itself
                    await graph.get(url.replace("https://", "http://") + "/me")
        await anyio.sleep(0.05)  # let a connection attempt, had there been one, be accepted
    assert got == [[{"id": "1"}]]
    assert caught.value.code == "ForeignHost" and "127.0.0.1" in caught.value.message
    assert seen == ["Bearer token-for-graph-only"] * 2  # the Graph host got the token, twice (pages, delta)
    assert accepted == [], "a request reached the foreign host"
