"""The control line between the runtime and one intake process: JSON lines over a socketpair.

Each message is one JSON object with a type `t`. Requests (a body the intake process hands
back, a /health question) carry an `id`, and the answer is `{"t": "reply", "id": ...}`;
everything else is one-way. The socketpair is private to the two processes (created by the
parent, inherited by the child), which is why secrets may cross it: the key ring, the
settings and each subscription's clientState. None of them is ever logged.

It also owns how those secrets travel: `export_ring`/`import_ring`, `known_rows`/`known_from`,
`policy_state`/`adopt_policy`.
"""

from __future__ import annotations

import base64
import json
import pickle
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from agentseat.graph.subscription import KnownSubscription
from agentseat.runtime.crypto import KeyRing
from agentseat.runtime.normalize import TrustPolicy

if TYPE_CHECKING:
    from agentseat.config import Settings

__all__ = ["Wire", "WireClosed", "adopt_policy", "export_ring", "import_ring", "known_from", "known_rows",
           "pack_settings", "policy_state", "unpack_settings"]

#: A line holds at most one forwarded body (base64: 4/3 of webhook_max_body) and its envelope.
MAX_LINE = 8 * 1024 * 1024


class WireClosed(Exception):
    """The other end closed the line (it stopped, or crashed)."""


class Wire:
    """One end of the control line: `send`, `receive`, and `request` with its reply."""

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._send_lock = anyio.Lock(fast_acquire=True)  # several tasks send; anyio allows one writer at a time
        self._ids = 0
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> Wire:
        return cls(await SocketStream.from_socket(sock))

    async def send(self, message: Mapping[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            try:
                await self._stream.send(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise WireClosed from exc

    async def notify(self, message: Mapping[str, Any]) -> bool:
        """`send` for one-way notes: False, not an error, once the other end is gone (it is stopping)."""
        try:
            await self.send(message)
        except WireClosed:
            return False
        return True

    async def receive(self) -> dict[str, Any]:
        """The next message that is not a reply (replies go to their `request`)."""
        while True:
            try:
                line = await self._reader.receive_until(b"\n", MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                    anyio.ClosedResourceError, OSError) as exc:
                self._fail_waiting()
                raise WireClosed from exc
            message = json.loads(line)
            if message.get("t") != "reply":
                return message  # type: ignore[no-any-return]
            waiting = self._waiting.pop(int(message.get("id", -1)), None)
            if waiting is not None:
                waiting[1].append(message)
                waiting[0].set()

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send `message` and wait for its reply; `WireClosed` if the line closes first.

        Needs a task running `receive` on this wire: that is where replies are read."""
        self._ids += 1
        done, answer = anyio.Event(), []
        self._waiting[self._ids] = (done, answer)
        try:
            await self.send({**message, "id": self._ids})
            await done.wait()
        finally:
            self._waiting.pop(self._ids, None)
        if not answer:
            raise WireClosed
        return answer[0]

    def _fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for done, _ in waiting.values():
            done.set()  # with no answer: `request` raises WireClosed

    async def aclose(self) -> None:
        self._fail_waiting()
        await self._stream.aclose()


# --- what crosses it --------------------------------------------------------------------------
def pack_settings(settings: Settings) -> str:
    # Pickled, not re-read from the environment: `serve`'s command-line options and its env
    # file make the parent's settings, and the child must use exactly those.
    return base64.b64encode(pickle.dumps(settings)).decode()


def unpack_settings(packed: str) -> Settings:
    return pickle.loads(base64.b64decode(packed))  # type: ignore[no-any-return]  # our own parent's bytes


def export_ring(ring: KeyRing) -> list[dict[str, Any]]:
    """Each private key once (PKCS#8 PEM), with every certificate id and thumbprint it is found by."""
    return [{"pem": key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
             "ids": ids, "thumbprints": thumbprints} for key, ids, thumbprints in ring.entries()]


def import_ring(rows: Iterable[Mapping[str, Any]]) -> KeyRing:
    ring = KeyRing()
    for row in rows:
        key = load_pem_private_key(str(row["pem"]).encode(), password=None)
        for certificate_id in row["ids"]:
            ring.add(key, certificate_id=certificate_id)  # type: ignore[arg-type]
        for thumbprint in row["thumbprints"]:
            ring.add(key, thumbprint=thumbprint)  # type: ignore[arg-type]
    return ring


def known_rows(known: Mapping[str, KnownSubscription]) -> list[list[Any]]:
    """The subscriptions the pipeline screens with, held and in their grace, secrets included."""
    rows = []
    for sub_id in sorted(known):
        sub = known.get(sub_id)
        if sub is not None:
            rows.append([sub.id, sub.kind, sub.client_state, sub.rich])
    return rows


def known_from(rows: Iterable[list[Any]]) -> dict[str, KnownSubscription]:
    return {str(r[0]): KnownSubscription(str(r[0]), r[1], str(r[2]), rich=bool(r[3])) for r in rows}


def policy_state(policy: TrustPolicy) -> dict[str, Any]:
    return {"tenant_id": policy.tenant_id, "sponsor_ids": sorted(policy.sponsor_ids),
            "sponsor_names": sorted(policy.sponsor_names), "own_ids": sorted(policy.own_ids),
            "domains": sorted(policy.domains)}


def adopt_policy(policy: TrustPolicy, state: Mapping[str, Any]) -> None:
    """Update `policy` in place: the pipeline and the intake hold this very object."""
    policy.tenant_id = str(state["tenant_id"])
    for name in ("sponsor_ids", "sponsor_names", "own_ids", "domains"):
        setattr(policy, name, set(state[name]))
