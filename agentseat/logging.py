"""Structured logging to stderr, with secrets redacted.

stdout belongs to the MCP protocol, so every log line goes to stderr. The
pipeline ends with a redaction step that masks bearer tokens, JWTs (assertions
and access tokens) and PEM private keys wherever they appear in an event.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"

# A JWT is three base64url segments; access tokens and assertions both look so.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_SECRET_FIELD = re.compile(
    r"(?i)(access_token|refresh_token|id_token|client_assertion|assertion|user_federated_identity_credential"
    r"|passphrase|password|secret|authorization|private_key|client_state|clientstate|validation_token|authtoken)"
)


def debug_on(name: str) -> bool:
    """Whether the debug lines of logger `name` are kept: a hot path asks before it builds one.

    structlog's lazy module logger binds anew on every call, and the level filter comes after
    that: a debug line the level drops still cost about 15 us of GIL-held work (bench/ profile,
    batch 1: three a POST were 4 % of it). The stdlib caches this answer per logger.
    """
    return logging.getLogger(name).isEnabledFor(logging.DEBUG)


def redact_text(text: str) -> str:
    """Mask token, assertion and key material inside a string."""
    text = _PEM_KEY.sub(REDACTED, text)
    text = _BEARER.sub("Bearer " + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if _SECRET_FIELD.search(key) and value:
            return REDACTED
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence against leaking secrets."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _redact_rendered(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Exceptions are rendered into `exception` by format_exc_info; scrub that text too.
    if isinstance(event_dict.get("exception"), str):
        event_dict["exception"] = redact_text(event_dict["exception"])
    return event_dict


def configure(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to stderr (or `stream`), redacted."""
    stream = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_rendered,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                               structlog.processors.format_exc_info, _redact_rendered, redact_secrets],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Third-party chatter stays at warning unless we debug.
    for noisy in ("aiohttp.access", "msal", "urllib3", "mcp", "pyngrok", "asyncio"):
        logging.getLogger(noisy).setLevel(numeric if level == "debug" else max(numeric, logging.WARNING))
