"""Why `agentseat serve` cannot work, found before anything else runs, and how the server says so.

It owns the quick checks `serve` makes before it builds a runtime (settings complete, the key
file decryptable, the prompts loadable) and the answer a server gives while it is not ready:
`status` and `whoami` say what is wrong and the command that fixes it, every other tool
returns the same error. A server that exits would show the host only "Failed to connect";
one that answers can tell the user (reference §1). It does not serve MCP (`server.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

from ..errors import AgentSeatError, ConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..prompts.loader import Prompts

log = structlog.get_logger(__name__)

DOCTOR = "`agentseat doctor` checks every step"
RESTART = ("a restart is enough once it is fixed: restart the MCP server (in Claude Code, /mcp, "
           "select agentseat, Reconnect) or the session")


def not_set_up(missing: list[str]) -> ConfigError:
    return ConfigError(f"agentseat is not set up: missing settings {', '.join(missing)}",
                       hint="run `agentseat setup` (or `agentseat demo` to try the sandbox), then `agentseat doctor`")


def invalid_settings(exc: Exception) -> ConfigError:
    """A settings value that does not parse (pydantic's ValidationError, a bad config file)."""
    if isinstance(exc, AgentSeatError):
        return ConfigError(f"invalid settings: {exc.message}", hint=exc.hint or f"fix the setting; {DOCTOR}")
    detail = "; ".join(f"AGENTSEAT_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                       for e in getattr(exc, "errors", lambda: [])()) or type(exc).__name__
    return ConfigError(f"invalid settings: {detail}",
                       hint=f"fix it in the environment or in the file `agentseat setup` wrote; {DOCTOR}")


def check(settings: Settings) -> tuple[Prompts | None, AgentSeatError | None]:
    """The prompts, or the first reason this server cannot run, cheapest check first."""
    from ..identity.keys import KeyStore
    from ..prompts.loader import load_prompts

    if missing := settings.missing_identity():
        return None, not_set_up(missing)
    try:
        # ~90 ms of key derivation: worth it, a wrong passphrase otherwise surfaces only at the first token.
        KeyStore(settings).load(settings.cert_thumbprint or None)
        return load_prompts(settings), None
    except AgentSeatError as exc:
        return None, exc
    except Exception as exc:  # a bug here must still leave a server that connects and explains
        log.exception("preflight_crashed", error=type(exc).__name__)
        return None, AgentSeatError(f"the startup check failed unexpectedly ({type(exc).__name__})",
                                    hint=f"see the agentseat log on stderr; {DOCTOR}")


@contextmanager
def held_logs() -> Iterator[list[logging.LogRecord]]:
    """Hold every log record made inside the block, so the caller can write its verdict first.

    The caller replays them with `replay` after its own first line; keyring backends, for
    one, log as they load, and the reason must be the first line a user finds.
    """
    root = logging.getLogger()
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    saved = root.handlers[:]
    root.handlers[:] = [_Hold()]
    try:
        yield held
    finally:
        root.handlers[:] = saved


def replay(records: list[logging.LogRecord]) -> None:
    for record in records:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def fix_of(failure: AgentSeatError) -> str:
    hint = failure.hint or "see the agentseat log on stderr"
    return hint if "agentseat doctor" in hint else f"{hint}; {DOCTOR}"


def failure_view(failure: AgentSeatError, **extra: Any) -> dict[str, Any]:
    """What `status` and `whoami` answer while the server cannot work."""
    return {"ready": False, "problem": failure.message, "fix": fix_of(failure), "then": RESTART, **extra}


class NoRuntime:
    """Stands in for a Runtime that could not be built, so the tools can still be listed.

    No tool body runs while the server is not ready (the ToolBox answers for them), so
    every attribute is None.
    """

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings

    def __getattr__(self, name: str) -> None:
        return None
