"""Graph's DateTimeOffset strings, to and from epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def to_graph_time(ts: float) -> str:
    """UTC with seven fractional digits and a Z, as Graph writes it."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def parse_graph_time(value: str) -> float:
    """Any fraction length (Graph uses up to 7 digits), `Z` or an offset."""
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
