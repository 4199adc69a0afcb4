"""`agentseat audit tail|verify|export --since`: read the audit log without a running runtime."""

from __future__ import annotations

import json
from typing import TextIO

from ..config import Settings
from ..errors import AgentSeatError
from ..record.history import since_bound
from .chain import AuditLog

__all__ = ["audit_export", "audit_tail", "audit_verify", "open_log"]


def open_log(settings: Settings) -> AuditLog:
    path = settings.state_dir / "audit.db"
    if not path.exists():
        raise AgentSeatError(f"no audit log at {path}", hint="it starts with the first runtime in this state dir")
    return AuditLog(path)


def _line(row: dict[str, object]) -> str:
    detail = " ".join(f"{k}={v}" for k, v in sorted(dict(row["detail"]).items()) if v is not None)  # type: ignore[call-overload]
    return f"#{row['id']} {row['at']} {row['kind']:<7} {row['action']} {detail}".rstrip()


def audit_tail(settings: Settings, limit: int, out: TextIO) -> int:
    log = open_log(settings)
    try:
        for row in log.rows(limit=limit, newest=True):
            print(_line(row), file=out)
    finally:
        log.close()
    return 0


def audit_verify(settings: Settings, out: TextIO) -> int:
    """0 when the chain holds; 1, naming the first bad row, when it does not."""
    log = open_log(settings)
    try:
        count, broken = log.verify()
    finally:
        log.close()
    if broken is None:
        print(f"audit log intact: {count} rows, hash chain verified", file=out)
        return 0
    print(f"audit log BROKEN at row {broken.row}: {broken.reason}", file=out)
    return 1


def audit_export(settings: Settings, since: str | None, out: TextIO) -> int:
    """JSON lines, oldest first, with each row's prev and hash so the chain can be checked elsewhere."""
    log = open_log(settings)
    try:
        for row in log.rows(since=since_bound(since)):
            print(json.dumps(row, ensure_ascii=False, sort_keys=True), file=out)
    finally:
        log.close()
    return 0
