"""What `agentseat status` prints of Event Hubs: the partitions this machine owns, its checkpoints.

No Azure SDK import here: `status` works where the `eventhub` extra is not installed.

The runtime's consumer keeps a snapshot in the inbox's meta table (consumer.py); this turns
it into lines. Ownership is only current while the runtime runs: otherwise it is shown as
what the last run held.
"""

from __future__ import annotations

from typing import Any

__all__ = ["META_KEY", "eventhub_lines"]

#: Inbox meta key: what this machine's runtime owns and has checkpointed (consumer.py writes it).
META_KEY = "eventhub"


def eventhub_lines(snapshot: dict[str, Any] | None, *, running: bool) -> list[str]:
    if not snapshot:
        return []
    where = f"{snapshot.get('namespace')}/{snapshot.get('hub')} ({snapshot.get('consumer_group')}, " \
            f"checkpoints {snapshot.get('checkpoint_store')})"
    owned = snapshot.get("owned") or []
    held = ", ".join(owned) if owned else "none"
    lines = [where, f"partitions owned by pid {snapshot.get('pid')}: {held}" if running
             else f"partitions owned: none (not running; last updated {snapshot.get('updated_at', '?')})"]
    for partition, point in sorted((snapshot.get("checkpoints") or {}).items(), key=lambda kv: kv[0]):
        lines.append(f"partition {partition}: checkpoint at sequence number {point.get('sequence_number')} "
                     f"(offset {point.get('offset')}, {point.get('at') or 'before this run'})")
    if snapshot.get("last_error"):
        lines.append(f"last error: {snapshot['last_error']}")
    return lines
