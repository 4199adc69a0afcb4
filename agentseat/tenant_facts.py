"""What this tenant was seen to do, and what the runtime adapted to.

Microsoft's docs leave several behaviours open (the validation tokens' `aud`, the
longest chat subscription, `$orderby` on chats, how long a new mailbox takes). The
runtime adapts to whatever the tenant does and records it here, so `status`,
`doctor` and `doctor --live --report` can say so instead of degrading silently.

One small JSON file in the state dir (0600), written whole through a rename, so
readers in other processes (`agentseat status` while `serve` runs) never see half
of it. Values are facts and reasons, never message text or secrets.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

import structlog

from .storage import create_private

__all__ = ["FACTS_FILE", "TenantFacts"]

log = structlog.get_logger(__name__)

FACTS_FILE = "tenant_facts.json"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class TenantFacts:
    """Facts by key (`{"value": ..., "seen_at": iso}`) and warnings by key (`{"message", "since"}`)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FACTS_FILE
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"facts": {}, "warnings": {}}
        except (OSError, ValueError) as exc:  # a damaged file is rebuilt from what is seen next
            log.warning("tenant_facts_unreadable", path=str(self.path), error=type(exc).__name__)
            return {"facts": {}, "warnings": {}}
        return {"facts": dict(data.get("facts") or {}), "warnings": dict(data.get("warnings") or {})}

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            create_private(tmp)
            tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk loses a note, never a message
            log.warning("tenant_facts_not_saved", path=str(self.path), error=exc.strerror)

    def record(self, key: str, value: Any) -> None:
        """Remember what the tenant did for `key`; unchanged values are not rewritten."""
        with self._lock:
            self._data = self._read()  # another process (setup, doctor --live) may have written since
            current = self._data["facts"].get(key)
            if current is not None and current.get("value") == value:
                return
            self._data["facts"][key] = {"value": value, "seen_at": _now()}
            log.info("tenant_fact", key=key, value=value if isinstance(value, (str, int, float, bool)) else "...")
            self._write()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            fact = self._data["facts"].get(key)
        return default if fact is None else fact.get("value", default)

    def warn(self, key: str, message: str | None) -> None:
        """Raise (or, with None, clear) a warning that `status` shows until it is cleared."""
        with self._lock:
            self._data = self._read()
            current = self._data["warnings"].get(key)
            if message is None:
                if current is None:
                    return
                del self._data["warnings"][key]
            elif current is not None and current.get("message") == message:
                return
            else:
                self._data["warnings"][key] = {"message": message, "since": _now()}
                log.warning("tenant_warning", key=key, message=message)
            self._write()

    def snapshot(self) -> dict[str, Any]:
        """`{"facts": {key: {"value", "seen_at"}}, "warnings": {key: {"message", "since"}}}`."""
        with self._lock:
            return json.loads(json.dumps(self._data))

    @classmethod
    def read(cls, state_dir: Path) -> dict[str, Any]:
        """The snapshot another process wrote, for `agentseat status` and `doctor`."""
        return cls(state_dir).snapshot()
