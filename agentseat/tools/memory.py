"""The agent's memory tools, from their own packages: the record and the promises (issue 15)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..promises import tools as promise_tools
from ..record import tools as record_tools
from ..summary import brief
from .base import Tool

if TYPE_CHECKING:
    from ..runtime.app import Runtime


def memory_tools(runtime: Runtime) -> list[Tool]:
    return [*record_tools.tools(runtime), *promise_tools.tools(runtime), *brief.tools(runtime)]
