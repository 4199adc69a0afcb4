"""`doctor --live --report FILE`: what a user attaches to a bug report.

Versions, the checks, the live findings, the tenant facts and warnings, and the settings
that shape behaviour (endpoints, mode, tunnel, lifetimes), as JSON. Never a secret or a
message: settings are taken from an allowlist, every string is scrubbed of anything
token-like (JWTs, bearer values, PEM blocks, long opaque strings such as client states),
and keys that name secrets are dropped whatever their value. The file is created 0600.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Settings
from ..logging import REDACTED, redact_text

__all__ = ["build_report", "scrub", "write_report"]

#: Settings that explain behaviour and hold nothing secret.
_SETTINGS = ("tenant_id", "authority_host", "graph_url", "jwks_url", "blueprint_app_id", "agent_id",
             "agent_user_id", "mode", "tunnel", "webhook_port", "chat_subscription_minutes",
             "mail_subscription_minutes", "chat_poll_seconds", "mail_poll_seconds", "reconcile_seconds",
             "inbound_policy")
#: Keys whose values are secrets or message content, wherever they appear (whole names or
#: their last part: `access_token` and `validation_token` go, the `validation_tokens` fact,
#: which holds claims, stays).
_SECRET_KEY = re.compile(r"(?i)^(?:.*_)?(?:token|secret|passphrase|password|client_?state|clientstate|private_key|"
                         r"key_pem|pem|assertion|credential|authorization|cookie|body|text|content|"
                         r"preview|subject)$")
#: A run of 32+ URL-safe or base64 characters mixing upper case, lower case and digits: a
#: client state, a key or a token fragment. Ids (lower-case GUIDs), hex thumbprints (upper
#: case and digits) and paths stay readable.
_OPAQUE = re.compile(r"[A-Za-z0-9_+/=-]{32,}")
_MIXED = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"))


def _opaque(match: re.Match[str]) -> str:
    text = match.group(0)
    return REDACTED if all(p.search(text) for p in _MIXED) else text


def _scrub_text(text: str) -> str:
    return _OPAQUE.sub(_opaque, redact_text(text))


def scrub(value: Any, key: str = "") -> Any:
    """A copy of `value` with secret-named keys removed and token-like text masked."""
    if isinstance(value, Mapping):
        return {str(k): scrub(v, str(k)) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [scrub(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _scrub_text(str(value))


def build_report(settings: Settings, checks: list[dict[str, Any]], findings: list[dict[str, Any]],
                 tenant: dict[str, Any]) -> dict[str, Any]:
    """The report as data, already scrubbed."""
    import aiohttp
    import msal

    shown = {name: getattr(settings, name, None) for name in _SETTINGS}
    report = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"agentseat": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                     "msal": getattr(msal, "__version__", "?"), "aiohttp": aiohttp.__version__},
        "settings": {k: (str(v) if v is not None and not isinstance(v, (bool, int, float)) else v)
                     for k, v in shown.items()},
        "checks": checks,
        "findings": findings,
        "facts": tenant.get("facts", {}),
        "warnings": tenant.get("warnings", {}),
    }
    return scrub(report)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write `report` to `path`, readable by this user only (an existing file is made 0600 first)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            json.dump(report, out, indent=2, sort_keys=True)
            out.write("\n")
    finally:
        if fd >= 0:
            os.close(fd)
