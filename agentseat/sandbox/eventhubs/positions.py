"""Where a receive link starts: the client's `apache.org:selector-filter:string`.

Event Hubs reads a starting position from the source's selector filter
("AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide", filters,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide; the
SDK writes it as `amqp.annotation.x-opt-offset > '<offset>'`, `...x-opt-sequence-number`
or `...x-opt-enqueued-time` with `>` or, when inclusive, `>=`). Offset `-1` is
the start of the partition and `@latest` its end. Without a filter a receiver
starts at the beginning.
"""

from __future__ import annotations

import re

from .store import Partition

SELECTOR_FILTER = "apache.org:selector-filter:string"
_EXPR = re.compile(r"^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*"
                   r"(>=|>)\s*'([^']*)'\s*$")


class BadSelector(ValueError):
    pass


def start_sequence(partition: Partition, selector: str | None) -> int:
    """The sequence number of the first event the link delivers (possibly not yet enqueued)."""
    if not selector:
        return partition.begin_sequence
    match = _EXPR.match(selector)
    if match is None:
        raise BadSelector(f"The selector filter '{selector}' is not a supported event position.")
    field, op, raw = match.groups()
    inclusive = op == ">="
    if field == "x-opt-offset":
        if raw == "-1":
            return partition.begin_sequence
        if raw == "@latest":
            return partition.next_sequence
        return _first(partition, lambda e: e.offset, _number(raw), inclusive)
    if field == "x-opt-sequence-number":
        value = _number(raw)
        return max(partition.begin_sequence, value if inclusive else value + 1)
    return _first(partition, lambda e: e.enqueued_ms, _number(raw), inclusive)


def _first(partition: Partition, key, value: int, inclusive: bool) -> int:  # type: ignore[no-untyped-def]
    for event in partition.events:
        k = key(event)
        if k > value or (inclusive and k == value):
            return event.sequence
    return partition.next_sequence


def _number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise BadSelector(f"'{raw}' is not a valid event position.") from None
