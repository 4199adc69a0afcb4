"""Fixtures for the subscription and delivery tests: a webhook receiver and a Graph caller over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from agentseat.sandbox.app import Sandbox
from tests.sandbox._webhook import Graph, Receiver, https_session


@pytest.fixture
async def rx() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def session(sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with https_session(sandbox) as s:
        yield s


@pytest.fixture
def graph(sandbox: Sandbox, session: aiohttp.ClientSession) -> Graph:
    return Graph(sandbox, session)
