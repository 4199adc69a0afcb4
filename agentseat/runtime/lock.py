"""One runtime per agent per machine: an OS file lock elects the owner.

The owner runs the webhook, tunnel, subscriptions and poller; every other
`agentseat serve` for the same state dir is a sink on the shared inbox and
keeps trying the lock, so when the owner exits or dies (the kernel drops its
lock with the process) another process takes over within a second.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import anyio
import structlog

log = structlog.get_logger(__name__)


class OwnerLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        log.info("runtime_owner_elected", pid=os.getpid())
        return True

    async def acquire(self, poll: float = 0.5) -> None:
        """Wait until this process owns the runtime."""
        while not self.try_acquire():
            await anyio.sleep(poll)

    def owner_pid(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
