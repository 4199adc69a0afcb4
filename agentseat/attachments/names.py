"""Attachment names and ids as the agent sees them: sanitised names, and the channel meta value.

A file name is chosen by whoever uploaded it, so it is data: it may hold what would forge a tag,
split the meta list, or read as a path. The official channel plugins replace `[<>[]\\r\\n;]` in
uploader-chosen names (claude-code-host §2); the `id:name,id:name` meta list also needs commas
and colons gone, and a name is never a path, so separators go too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Longest name kept; a longer one is cut, its extension kept.
MAX_NAME = 80
#: At most this many `id:name` pairs in the meta value (`attachment_count` says how many there are).
MAX_META_PAIRS = 20
# Control characters, the meta list's separators, path separators, what opens or closes a tag,
# quotes, and the invisible characters that reorder or hide text (bidi controls, zero-width).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f,:;/\\<>\[\]\"'`|\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_RUNS = re.compile(r"_{2,}")
#: What an attachment id may hold: Graph's ids are GUIDs, hex, or base64 (hostedContents).
_ID = re.compile(r"^[A-Za-z0-9+/=_.\-]{1,512}$")


def safe_name(name: str | None, fallback: str = "attachment") -> str:
    """`name` with every unsafe character replaced by `_`, no leading dots, at most MAX_NAME characters."""
    cleaned = _RUNS.sub("_", _UNSAFE.sub("_", name or "")).strip().lstrip(".").strip()
    if not cleaned.strip("_ "):
        return fallback
    if len(cleaned) > MAX_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and stem and 0 < len(ext) <= 10:
            cleaned = stem[: MAX_NAME - len(ext) - 2] + "~." + ext
        else:
            cleaned = cleaned[: MAX_NAME - 1] + "~"
    return cleaned


def safe_id(value: Any) -> str | None:
    """`value` if it can be an attachment id (no separator of the meta list), else None."""
    return value if isinstance(value, str) and _ID.match(value) else None


def meta_pairs(items: Iterable[Mapping[str, Any]]) -> str:
    """The `attachments` meta value: `id:name` pairs, comma-separated (ids hold neither separator)."""
    pairs = [f"{item['id']}:{safe_name(str(item.get('name') or ''))}" for item in items]
    return ",".join(pairs[:MAX_META_PAIRS])
