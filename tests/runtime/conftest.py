"""Fixtures shared by the runtime tests that drive a pipeline or webhook directly (`_notify.World`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._notify import Keys, World, keys, make_world

__all__ = ["keys", "world"]  # keys: the fixture, defined beside the World it feeds


@pytest.fixture
async def world(tmp_path: Path, keys: Keys) -> AsyncIterator[World]:
    async with make_world(tmp_path, keys) as w:
        yield w
