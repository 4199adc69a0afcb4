"""Fixtures shared by the runtime tests that drive a pipeline or webhook directly (`_notify.World`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._notify import Keys, World, make_keys, make_world


@pytest.fixture(scope="module")
def keys() -> Keys:
    """The agent's key and Graph's signing key: RSA generation is slow, so once per module."""
    return make_keys()


@pytest.fixture
async def world(tmp_path: Path, keys: Keys) -> AsyncIterator[World]:
    async with make_world(tmp_path, keys) as w:
        yield w
