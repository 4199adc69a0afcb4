"""Genuine encrypted rich notifications, built the way the sandbox's delivery engine builds
them, and an open-loop sender that POSTs them straight to a runtime's webhook.

Bodies reuse `agentseat.sandbox.notifications.payloads` (the chatMessage item with its
`encryptedContent` from runtime/crypto's `encrypt_content`, and `validationTokens`
signed by the sandbox's keys), so the runtime verifies and decrypts them exactly as
it does the sandbox's own. They are built before a run, so the generator is not the
bottleneck; each POST carries a token of its own, as the sandbox sends them (a
runtime that caches verified tokens gains nothing from repeats here: the worst case).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import anyio

from agentseat.sandbox.notifications import payloads
from agentseat.sandbox.notifications.rules import parse_certificate
from agentseat.sandbox.tenant import ChatMessage, Subscription

from .harness import percentile

if TYPE_CHECKING:
    from agentseat.sandbox.app import Sandbox

#: Graph's delivery timeout: a 2xx later than this counts as a failed attempt
#: (change-notifications-delivery-webhooks, "HTTP codes and retry logic").
GRAPH_TIMEOUT = 3.0
_Item = TypeVar("_Item")
_ids = itertools.count(int(4e12))  # message ids far above the sandbox's epoch-ms ids: never a duplicate
_MESSAGE_ID = re.compile(rb"messages\('([^']+)'\)")


def message_ids(body: bytes) -> list[str]:
    """The chat message ids a notification body names (each appears in `resource` and `@odata.id`)."""
    return list(dict.fromkeys(m.decode() for m in _MESSAGE_ID.findall(body)))


class NotificationFactory:
    """Builds POST bodies for one rich Teams subscription, as the sandbox's Graph would send them.

    Runs inside the sandbox process (bench/sandbox_server.py), which owns the signing keys.
    """

    def __init__(self, sb: Sandbox, sub: Subscription, *, sender_role: str = "colleague1",
                 fresh_tokens: bool = True) -> None:
        from agentseat.sandbox.graph.chats import ensure_one_on_one

        assert sub.encryption_certificate
        self.sb, self.sub = sb, sub
        self.cert = parse_certificate(sub.encryption_certificate)
        self.sender = sb.role(sender_role)
        self.chat = ensure_one_on_one(sb, self.sender, sb.role("agent_user"))[0]
        self.fresh_tokens = fresh_tokens
        self._token: str | None = None

    def _item(self) -> tuple[str, dict[str, Any]]:
        now = self.sb.clock.now()
        msg = ChatMessage(id=str(next(_ids)), chat_id=self.chat.id, from_id=self.sender,
                          content=f"load {now:.3f}", content_type="text", created=now, last_modified=now)
        return msg.id, payloads.chat_notification(self.sb, self.sub, msg, "created", self.cert)

    def _tokens(self) -> list[str]:
        if self.fresh_tokens or self._token is None:
            self._token = payloads.validation_token(self.sb, payloads.token_audience(self.sub))
        return [self._token]

    def body(self, batch: int) -> tuple[list[str], bytes]:
        """One POST body of `batch` new messages: (their ids, the JSON bytes)."""
        items = [self._item() for _ in range(batch)]
        body = {"value": [item for _, item in items], "validationTokens": self._tokens()}
        return [mid for mid, _ in items], json.dumps(body).encode()

    def bodies(self, posts: int, batch: int) -> list[tuple[list[str], bytes]]:
        return [self.body(batch) for _ in range(posts)]


@dataclass
class SendResult:
    """How a paced run of POSTs went, from the sender's side."""

    target_posts_per_s: float
    posts: int = 0
    ok: int = 0
    failed: int = 0  # non-2xx or a connection error
    over_timeout: int = 0  # 2xx later than Graph's 3 s
    seconds: float = 0.0  # first send to last answer
    send_seconds: float = 0.0  # first send to last send
    answer_times: list[float] = field(default_factory=list)

    @property
    def achieved_posts_per_s(self) -> float:
        # n sends span n - 1 intervals.
        return (self.posts - 1) / self.send_seconds if self.posts > 1 and self.send_seconds > 0 else 0.0

    def answer_ms(self) -> dict[str, float]:
        ms = [t * 1000 for t in self.answer_times]
        return {"p50": round(percentile(ms, 50), 1), "p99": round(percentile(ms, 99), 1),
                "max": round(max(ms), 1) if ms else float("nan")}


async def pace(items: list[_Item], posts_per_s: float, post: Callable[[_Item], Awaitable[int]], *,
               max_in_flight: int = 256) -> SendResult:
    """`post` each item at a steady `posts_per_s`, open loop: a slow answer delays no later send
    unless `max_in_flight` answers are outstanding (then the schedule slips, and the achieved
    rate shows it). `post` returns the HTTP status, 0 for a connection error."""
    result = SendResult(target_posts_per_s=posts_per_s)
    limiter = anyio.Semaphore(max_in_flight)

    async def one(item: _Item) -> None:
        began = anyio.current_time()
        try:
            status = await post(item)
        finally:
            limiter.release()
        took = anyio.current_time() - began
        result.answer_times.append(took)
        if 200 <= status < 300:
            result.ok += 1
            result.over_timeout += took > GRAPH_TIMEOUT
        else:
            result.failed += 1

    start = anyio.current_time() + 0.02
    last_send = start
    async with anyio.create_task_group() as tg:
        for i, item in enumerate(items):
            delay = start + i / posts_per_s - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            await limiter.acquire()
            last_send = anyio.current_time()
            result.posts += 1
            tg.start_soon(one, item)
    result.send_seconds = max(last_send - start, 1e-6)
    result.seconds = anyio.current_time() - start
    return result


async def send_paced(session: aiohttp.ClientSession, url: str, bodies: list[tuple[list[str], bytes]],
                     posts_per_s: float, *, max_in_flight: int = 256) -> SendResult:
    """POST `bodies` with aiohttp's client at a steady `posts_per_s`, open loop (`pace`)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}

    async def post(body: bytes) -> int:
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, OSError):
            return 0

    return await pace([body for _, body in bodies], posts_per_s, post, max_in_flight=max_in_flight)
