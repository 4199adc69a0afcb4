"""Waking the clock's owner from any process: one UDP datagram to a loopback port.

The owner binds 127.0.0.1 on a free port and writes it to the promises store (`clock_port`);
a process that adds a promise sends one empty datagram there. A poke only makes the owner
look at the store again, so a stray datagram costs a recompute and nothing else. No owner
running: nothing listens, and the owner reads the store when it starts.
"""

from __future__ import annotations

import socket
from contextlib import suppress

from ..promises.store import Promises

__all__ = ["PORT_KEY", "poke"]

PORT_KEY = "clock_port"


def poke(store: Promises) -> bool:
    """Nudge the owner's clock; True when a port was known and the datagram went out."""
    port = store.get_meta(PORT_KEY)
    if not port or not port.isdigit():
        return False
    with suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"", ("127.0.0.1", int(port)))
        return True
    return False
