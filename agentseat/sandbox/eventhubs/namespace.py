"""The emulated Event Hubs namespace: its name, SAS key, hubs and consumer groups.

Knobs come from `SandboxOptions.extra["eventhubs"]` (all optional): `namespace`
(default `agentseat-sandbox`), `hubs` (default `["agentseat"]`), `partitions`
(default 4, as a new hub in the portal), `retention_hours` (default 24: one day,
the Standard tier's default), `max_events` per partition (default 10,000),
`consumer_groups` (default `["$Default"]`) and `persist` (default true: events
are appended under `<state>/eventhubs/`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import Hub, new_hub

SUFFIX = ".servicebus.windows.net"
KEY_NAME = "RootManageSharedAccessKey"


@dataclass
class EventHubsOptions:
    namespace: str = "agentseat-sandbox"
    hubs: list[str] = field(default_factory=lambda: ["agentseat"])
    partitions: int = 4
    retention_hours: float = 24.0
    max_events: int = 10_000
    consumer_groups: list[str] = field(default_factory=lambda: ["$Default"])
    persist: bool = True

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> EventHubsOptions:
        raw = dict(extra.get("eventhubs") or {})
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        opts = cls(**known)
        if not opts.hubs or not all(isinstance(h, str) and h for h in opts.hubs):
            raise ValueError("eventhubs.hubs must name at least one hub")
        if not 1 <= int(opts.partitions) <= 32:
            raise ValueError("eventhubs.partitions must be between 1 and 32 (the Standard tier's range)")
        return opts


@dataclass
class Namespace:
    name: str
    key: str
    hubs: dict[str, Hub]
    consumer_groups: list[str]
    key_name: str = KEY_NAME

    @property
    def fqdn(self) -> str:
        return self.name + SUFFIX

    def connection_string(self, endpoint: str, hub: str | None = None) -> str:
        """A SAS connection string as the portal shows it (`Endpoint=sb://<fqdn>/;...`)."""
        text = f"Endpoint=sb://{self.fqdn}/;SharedAccessKeyName={self.key_name};SharedAccessKey={self.key}"
        return text + (f";EntityPath={hub}" if hub else "")


def load_namespace(state_dir: Path, opts: EventHubsOptions, now_ms: int) -> Namespace:
    """The namespace, keeping its SAS key (and with `persist`, its events) across restarts."""
    directory = state_dir / "eventhubs"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    meta_path = directory / "namespace.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("name") != opts.namespace or not meta.get("key"):
        meta = {"name": opts.namespace, "key": base64.b64encode(secrets.token_bytes(32)).decode(), "created": {}}
    created: dict[str, int] = meta.setdefault("created", {})
    hubs = {}
    for name in opts.hubs:
        created.setdefault(name, now_ms)
        hubs[name] = new_hub(name, partitions=int(opts.partitions), retention_seconds=float(opts.retention_hours) * 3600,
                             max_events=int(opts.max_events), created_ms=created[name],
                             directory=(directory / opts.namespace) if opts.persist else None)
    tmp = meta_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, meta_path)
    return Namespace(name=opts.namespace, key=meta["key"], hubs=hubs, consumer_groups=list(opts.consumer_groups))
