"""The sandbox as its own process, with a few bench-only routes under `/_bench/`.

`python -m bench.sandbox_server --dir DIR [--speed X]` runs agentseat's sandbox
(`agentseat.sandbox.app.Sandbox`, unchanged) and adds what a benchmark needs and
the control API does not offer:

- `GET  /_bench/clock`: the sandbox clock and `time.monotonic()` read together, so the
  bench process converts its own monotonic readings to sandbox time exactly
  (CLOCK_MONOTONIC is one clock for every process on the machine).
- `POST /_bench/agent`: register an agent certificate on the Blueprint and grant consent.
- `POST /_bench/seed`: 20 chats with the agent (one old message each) and a few old mails.
- `GET  /_bench/created`: message id (chat or mail) -> sandbox time it was accepted.
- `GET  /_bench/sends`: message id -> [POST start, answer read] of its notification's delivery.
- `GET|DELETE /_bench/subscriptions`: the live subscriptions; drop them all.
- `POST /_bench/notifications`: genuine rich notification bodies (bench/loadgen.py).
- `POST /_bench/eventhub/stage` then `POST /_bench/eventhub/publish`: take such bodies (in
  chunks, under the request size limit), then publish them to the emulated Event Hub at a
  steady rate, as Graph's Event Hubs delivery would (bench/eventhub.py).

It runs in its own process so the bench's MCP client, the load generator and the
sandbox never share a GIL: a timestamp taken in one is not delayed by the others.
It prints one JSON line (`url`, `dir`) on stdout when ready and stops when stdin closes.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.graph.auth import SANDBOX_KEY

_SENDS = web.AppKey("bench_sends", dict)


class BenchSandbox(Sandbox):
    """The sandbox plus the `/_bench/` routes and a record of delivery POST times."""

    def __init__(self, state_dir: Path, options: SandboxOptions | None = None) -> None:
        super().__init__(state_dir, options)
        self.sends: dict[str, tuple[float, float]] = {}
        self.staged: list[bytes] = []  # event bodies waiting for /_bench/eventhub/publish
        self._record_sends()

    def flush(self) -> None:
        # The bench never restarts its sandbox; writing the whole tenant every 0.5 s
        # would only take CPU from the runtime under test.
        return None

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.router.add_routes(_routes())
        return app

    def _record_sends(self) -> None:
        """Note when each chat message's notification POST started and when its answer was read."""
        from .loadgen import message_ids

        outbox = self.delivery.outbox
        original = outbox._post
        clock, sends = self.clock, self.sends

        async def timed_post(url: str, body: bytes, timeout: float) -> tuple[bool, float, bool]:
            ids = message_ids(body)
            began = clock.now()
            result = await original(url, body, timeout)
            ended = clock.now()
            for mid in ids:
                sends.setdefault(mid, (began, ended))
            return result

        outbox._post = timed_post  # type: ignore[method-assign]


def _sb(request: web.Request) -> BenchSandbox:
    return request.app[SANDBOX_KEY]  # type: ignore[return-value]


async def _clock(request: web.Request) -> web.Response:
    sb = _sb(request)
    return web.json_response({"now": sb.clock.now(), "mono": time.monotonic(), "speed": sb.clock.speed})


async def _agent(request: web.Request) -> web.Response:
    """`{"der_b64"}`: append the certificate to the Blueprint, grant consent; answer the settings."""
    from agentseat.sandbox.agent import register_agent

    sb = _sb(request)
    der = base64.b64decode((await request.json())["der_b64"])
    settings = register_agent(sb, der, display_name="bench certificate")
    roles = {name: sb.tenant.users[ref].upn for name, ref in sb.tenant.roles.items() if ref in sb.tenant.users}
    return web.json_response({"settings": settings, "upns": roles})


async def _seed(request: web.Request) -> web.Response:
    """`{"chats": 20, "mails": 2}`: the agent's three 1:1 chats, then group chats, one old message each."""
    from agentseat.sandbox.graph.chats import create_group_chat, ensure_one_on_one, post_chat_message
    from agentseat.sandbox.graph.mail import deliver_mail

    sb = _sb(request)
    data = await request.json()
    agent = sb.role("agent_user")
    people = [sb.role(r) for r in ("sponsor", "colleague1", "colleague2")]
    ids = []
    for i in range(int(data.get("chats", 20))):
        if i < len(people):
            chat, _ = ensure_one_on_one(sb, people[i], agent)
        else:
            chat = create_group_chat(sb, [agent, *people], f"bench room {i}")
        post_chat_message(sb, chat, people[i % len(people)], f"seed message {i}")
        ids.append(chat.id)
    agent_upn = sb.tenant.users[agent].upn
    for i in range(int(data.get("mails", 2))):
        deliver_mail(sb, sb.tenant.users[people[1]].upn, [agent_upn], f"seed mail {i}", "old news", "text")
    return web.json_response({"chats": ids})


async def _created(request: web.Request) -> web.Response:
    sb = _sb(request)
    created = {m.id: m.created for msgs in sb.tenant.messages.values() for m in msgs}
    created |= {m.id: m.received for box in sb.tenant.mail.values() for m in box}
    return web.json_response(created)


async def _sends(request: web.Request) -> web.Response:
    return web.json_response(_sb(request).sends)


def _live(sb: Sandbox) -> list[Any]:
    now = sb.clock.now()
    return [s for s in sb.tenant.subscriptions.values() if s.expiration > now]


async def _subscriptions(request: web.Request) -> web.Response:
    subs = [{"id": s.id, "resource": s.resource, "notification_url": s.notification_url, "expiration": s.expiration,
             "rich": s.include_resource_data} for s in _live(_sb(request))]
    return web.json_response({"subscriptions": subs})


async def _drop_subscriptions(request: web.Request) -> web.Response:
    sb = _sb(request)
    for sub_id in list(sb.tenant.subscriptions):
        del sb.tenant.subscriptions[sub_id]
        sb.delivery.forget(sub_id)
    return web.json_response({"subscriptions": []})


async def _notifications(request: web.Request) -> web.Response:
    """`{"posts", "batch", "fresh_tokens"?, "synthetic"?}`: bodies for the live rich Teams
    subscription, or, with `synthetic: {client_state, der_b64, certificate_id}`, for a
    subscription (`id` optional) that exists only in these bodies (the in-process hot-path benchmark)."""
    from agentseat.sandbox.tenant import Subscription

    from .loadgen import NotificationFactory

    sb = _sb(request)
    data = await request.json()
    synthetic = data.get("synthetic")
    if synthetic:
        sub = Subscription(
            id=synthetic.get("id") or str(uuid.uuid4()), app_id=sb.role("agent_identity"),
            creator_id=sb.role("agent_user"),
            resource=f"/users/{sb.role('agent_user')}/chats/getAllMessages", change_type="created",
            notification_url="http://127.0.0.1:9/notifications", expiration=sb.clock.now() + 3600,
            client_state=synthetic["client_state"], include_resource_data=True,
            encryption_certificate=synthetic["der_b64"], encryption_certificate_id=synthetic["certificate_id"],
        )
    else:
        sub = next((s for s in _live(sb) if "getallmessages" in s.resource.lower() and s.include_resource_data), None)
        if sub is None:
            return web.json_response({"error": "no live rich Teams subscription"}, status=409)
    factory = NotificationFactory(sb, sub, fresh_tokens=bool(data.get("fresh_tokens", True)))
    # CPU work (one RSA sign per POST): a worker thread keeps the sandbox's loop answering.
    bodies = await anyio.to_thread.run_sync(factory.bodies, int(data["posts"]), int(data["batch"]))
    return web.json_response({"subscription": sub.id,
                              "posts": [{"ids": ids, "body": body.decode()} for ids, body in bodies]})


async def _eventhub_stage(request: web.Request) -> web.Response:
    """`{"bodies": [json text]}`: add bodies for the next publish run.

    Graph's Event Hubs deliveries carry no `validationTokens` (change-notifications-delivery-event-hubs),
    so they are taken off here.
    """
    sb = _sb(request)
    for text in (await request.json())["bodies"]:
        body = json.loads(text)
        body.pop("validationTokens", None)
        sb.staged.append(json.dumps(body).encode())
    return web.json_response({"staged": len(sb.staged)})


async def _eventhub_publish(request: web.Request) -> web.Response:
    """`{"posts_per_s"}`: each staged body as one event on the first hub, paced open loop here.
    Answers what bench/loadgen.py's `SendResult` holds."""
    sb = _sb(request)
    rate = float((await request.json())["posts_per_s"])
    hub = next(iter(sb.eventhubs.namespace.hubs.values()))
    bodies, sb.staged = sb.staged, []
    times: list[float] = []
    start = time.monotonic() + 0.02
    last = start
    for i, body in enumerate(bodies):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await anyio.sleep(delay)
        elif i % 64 == 63:
            await anyio.sleep(0)  # behind schedule: still let the AMQP links carry what is published
        last = time.monotonic()
        sb.eventhubs.publish_body(hub, body)
        times.append(time.monotonic() - last)
    return web.json_response({"posts": len(bodies), "ok": len(bodies), "send_seconds": max(last - start, 1e-6),
                              "seconds": time.monotonic() - start, "answer_times": times})


def _routes() -> list[web.RouteDef]:
    return [
        web.get("/_bench/clock", _clock),
        web.post("/_bench/agent", _agent),
        web.post("/_bench/seed", _seed),
        web.get("/_bench/created", _created),
        web.get("/_bench/sends", _sends),
        web.get("/_bench/subscriptions", _subscriptions),
        web.delete("/_bench/subscriptions", _drop_subscriptions),
        web.post("/_bench/notifications", _notifications),
        web.post("/_bench/eventhub/stage", _eventhub_stage),
        web.post("/_bench/eventhub/publish", _eventhub_publish),
    ]


async def _serve(state: Path, options: SandboxOptions) -> None:
    sandbox = BenchSandbox(state, options)
    async with sandbox.running():
        print(json.dumps({"url": sandbox.url, "dir": str(state), "ca": str(sandbox.pki.ca_path)}), flush=True)
        # Stop when the bench closes our stdin (or dies): no orphan sandbox.
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_server")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    configure("warning", "console", stream=sys.stderr)
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    anyio.run(_serve, args.dir, SandboxOptions(speed=args.speed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
