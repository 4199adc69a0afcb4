"""What the attack corpus (bench/attack.py) found at the webhook's HTTP layer.

- A connection that never finishes its request head was held for aiohttp's
  default keep-alive of an hour: a slowloris could pin sockets and file
  descriptors until Graph could no longer connect.
- A request aiohttp cannot parse was logged as an error with a traceback quoting
  the sender's bytes: anyone could fill the log with their own text.
"""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from agentseat.runtime import webhook

from ._notify import World, serving


def _address(base: str) -> tuple[str, int]:
    host, _, port = base.removeprefix("http://").partition(":")
    return host, int(port)


@pytest.mark.parametrize("head", [b"", b"POST /notifications HTTP/1.1\r\nHost: x\r\n"])
async def test_a_request_head_that_never_ends_is_cut_off(world: World, monkeypatch: pytest.MonkeyPatch,
                                                          head: bytes) -> None:
    monkeypatch.setattr(webhook, "_IDLE_TIMEOUT", 0.5)
    async with serving(world) as (base, _):
        began = time.monotonic()
        async with await anyio.connect_tcp(*_address(base)) as stream:
            with anyio.fail_after(10), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.send(head)
                while True:  # a header line every 100 ms, never the blank line that ends the head
                    await anyio.sleep(0.1)
                    await stream.send(b"X-Slow: 1\r\n" if head else b"")
                    if not head:
                        await stream.receive()
        assert time.monotonic() - began < 5


async def test_malformed_http_is_a_quiet_drop_not_a_logged_traceback(world: World,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    secret_looking = b"Content-Length: 5\r\nX-Attacker-Text: eyJhbGciOi.attacker.text"
    request = (b"POST /notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n" + secret_looking + b"\r\n\r\n0\r\n\r\n")
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    async with serving(world) as (base, server):
        async with await anyio.connect_tcp(*_address(base)) as stream:
            await stream.send(request)
            with anyio.fail_after(5):
                answer = await stream.receive()
        assert answer.split(b" ", 2)[1] == b"400"  # aiohttp refuses it (in HTTP/1.0)
        assert server.stats.dropped["bad_http"] == 1
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and (r.levelno >= logging.WARNING or r.exc_info)]
    assert b"attacker.text" not in caplog.text.encode()
