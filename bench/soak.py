"""Soak with faults: thousands of chats and mails through a runtime that Graph drops on, and that is killed.

`python -m bench.soak [--quick]` (or `python -m bench soak`). One sandbox tenant,
one agent, one `agentseat watch --mode webhook` process on a loopback tunnel.
While 10,000 messages arrive (80% Teams: DMs from six people and posts in two
group chats; 20% mail, some from outside the tenant):

- the sandbox drops 20% of change notifications, duplicates 10% and holds back
  10% of batches behind the next one; about 5% of Graph calls on every route
  fail with 429 (Retry-After: 1), 500, 502, 503 (Retry-After: 1) or 504;
- the runtime is killed with SIGKILL three times and restarted on the same
  port, and once stopped and restarted on a new port (the tunnel URL changes,
  so every subscription moves);
- Graph removes the Teams subscription once (`subscriptionRemoved`) and tells
  the mail subscription it `missed` notifications once.

Dropped notifications are recovered only by reconciliation, so the runtime runs
with AGENTSEAT_RECONCILE_SECONDS=60 and the soak waits for convergence; it never
forces a resync beyond what the runtime does itself (startup, lifecycle, timer).

What reached the channel is measured twice: in the inbox (unique event keys)
and at a sink with its own cursor, the JSON lines `agentseat watch` prints,
appended to one file across all five processes. A sink advances its cursor
after it handled an event, so a crash replays at most the event in hand: a
duplicate line at the sink is possible per crash, and each one is reported
with the restart it straddles. Exit code 0 when nothing was lost anywhere and
every duplicate is such a replay.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from agentseat.logging import configure
from agentseat.runtime.inbox import event_key
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.chats import create_group_chat

from ._harness import (
    KEY_PASSPHRASE,
    SandboxThread,
    WatchProcess,
    add_users,
    call,
    control,
    free_port,
    inbox_rows,
    keep_or_temp,
    live_subscriptions,
    log_events,
    provision_agent,
    scan_logs,
    stats,
    table,
    wait_until,
)

NOTIFICATION_FAULTS = {"drop": 0.2, "duplicate": 0.1, "reorder": 0.1}
# About 5% of Graph calls fail: 1 - (0.98 * 0.99 * 0.99 * 0.995 * 0.995) = 4.9%.
GRAPH_FAULTS = [
    {"route": "*", "rate": 0.02, "status": 429, "retry_after": 1},
    {"route": "*", "rate": 0.01, "status": 503, "retry_after": 1},
    {"route": "*", "rate": 0.01, "status": 500},
    {"route": "*", "rate": 0.005, "status": 502},
    {"route": "*", "rate": 0.005, "status": 504},
]
# When each disruption happens, as a share of the messages sent so far.
SCHEDULE = [(0.15, "kill"), (0.30, "remove"), (0.45, "kill"), (0.60, "move"), (0.72, "missed"), (0.85, "kill")]
MARKER = "bench_marker"  # lines the soak writes into the sink file between processes


@dataclass
class Message:
    n: int
    kind: str  # dm | group | mail
    sender: str
    target: str  # the agent's upn (dm, mail) or a chat id (group)
    text: str


@dataclass
class Run:
    """What happened, as the driver saw it."""

    sent: dict[int, str] = field(default_factory=dict)  # n -> event key
    kinds: Counter[str] = field(default_factory=Counter)
    send_errors: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small run: 600 messages")
    p.add_argument("--messages", type=int, help="how many messages (default 10,000; 600 with --quick)")
    p.add_argument("--mail-share", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=16, help="control API calls in flight")
    p.add_argument("--rate", type=float, help="messages per second (default: as fast as the sandbox takes them; "
                                              "10 with --quick, so restarts have time to come up)")
    p.add_argument("--mode", choices=["webhook", "auto"], default="webhook")
    p.add_argument("--reconcile-seconds", type=float, default=60.0)
    p.add_argument("--settle-timeout", type=float, default=300.0, help="seconds to wait for convergence")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dir", help="keep the sandbox, agent state, sink file and logs here")
    args = p.parse_args(argv)
    args.messages = args.messages or (600 if args.quick else 10_000)
    if args.rate is None and args.quick:
        args.rate = 10.0
    return args


def _plan(n: int, mail_share: float, rng: random.Random, people: list[str], agent: str,
          groups: dict[str, list[str]], outsiders: list[str]) -> list[Message]:
    plan = []
    group_ids = list(groups)
    for i in range(n):
        text = f"soak {i:05d} {rng.getrandbits(32):08x}"
        roll = rng.random()
        if roll < mail_share:
            sender = rng.choice(outsiders) if rng.random() < 0.25 else rng.choice(people)
            plan.append(Message(i, "mail", sender, agent, text))
        elif roll < mail_share + (1 - mail_share) * 0.6:
            plan.append(Message(i, "dm", rng.choice(people), agent, text))
        else:
            chat = rng.choice(group_ids)
            plan.append(Message(i, "group", rng.choice(groups[chat]), chat, text))
    return plan


async def _send(session: aiohttp.ClientSession, sb: Sandbox, msg: Message) -> str:
    if msg.kind == "mail":
        body = {"from": msg.sender, "to": msg.target, "subject": f"mail {msg.n:05d}", "body": msg.text}
        posted = await control(session, sb, "POST", "/_sandbox/mail", body)
        return event_key("mail", None, posted["message_id"])
    body = {"from": msg.sender, "text": msg.text, **({"to": msg.target} if msg.kind == "dm" else {"chat_id": msg.target})}
    posted = await control(session, sb, "POST", "/_sandbox/messages", body)
    return event_key("teams", posted["chat_id"], posted["message_id"])


async def _send_all(session: aiohttp.ClientSession, sb: Sandbox, plan: list[Message], run: Run,
                    concurrency: int, rate: float | None) -> None:
    limit = anyio.Semaphore(concurrency)

    async def one(msg: Message) -> None:
        try:
            for attempt in range(3):
                try:
                    run.sent[msg.n] = await _send(session, sb, msg)
                    run.kinds[msg.kind] += 1
                    return
                except (aiohttp.ClientError, RuntimeError):
                    # A control call that failed before the sandbox stored anything; any other
                    # failure would leave a message we cannot name, counted in `unexpected`.
                    run.send_errors += 1
                    await anyio.sleep(0.2 * (attempt + 1))
        finally:
            limit.release()

    interval = 1.0 / rate if rate else 0.0
    due = time.monotonic()
    async with anyio.create_task_group() as tg:
        for msg in plan:
            if interval:
                due += interval
                await anyio.sleep(max(0.0, due - time.monotonic()))
            await limit.acquire()
            tg.start_soon(one, msg)


def _mark(proc: WatchProcess, what: str) -> None:
    """A line in the sink file between two processes, so a replayed event can be placed."""
    with proc.stdout_path.open("a") as fh:
        fh.write(json.dumps({MARKER: what, "at": time.time()}) + "\n")


async def _subscription(sb: Sandbox, kind: str, timeout: float = 60.0) -> str:
    """The id of the live Teams or mail subscription (waits while one is being moved)."""
    found: list[str] = []

    def look() -> bool:
        found[:] = [s.id for s in live_subscriptions(sb) if ("messages" in s.resource.lower()) and
                    (("chats" in s.resource.lower()) == (kind == "teams"))]
        return len(found) == 1

    await wait_until(look, timeout, 0.5)
    if not found:
        raise RuntimeError(f"no live {kind} subscription")
    return found[0]


def _handled(log_path: Path, lifecycle_event: str) -> int:
    """How many times the runtime logged acting on this lifecycle event."""
    events, _ = log_events(log_path)
    return sum(1 for e in events if e.get("event") == "lifecycle_event" and e.get("lifecycle_event") == lifecycle_event)


async def _ready(session: aiohttp.ClientSession, sb: Sandbox, port: int) -> bool:
    """The runtime on `port` answers and both subscriptions point at it."""
    subs = live_subscriptions(sb)
    if len(subs) != 2 or not all(s.notification_url.startswith(f"http://127.0.0.1:{port}/") for s in subs):
        return False
    try:
        async with session.get(f"http://127.0.0.1:{port}/health") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _until_ready(session: aiohttp.ClientSession, sb: Sandbox, port: int, timeout: float = 180.0) -> float:
    """Seconds until the runtime was back in business (webhook up, subscriptions on its URL)."""
    began = time.monotonic()
    with anyio.move_on_after(timeout):
        while not await _ready(session, sb, port):
            await anyio.sleep(0.2)
    return round(time.monotonic() - began, 1)


async def _disrupt(session: aiohttp.ClientSession, sb: Sandbox, proc: WatchProcess, run: Run, plan_size: int,
                   ports: tuple[int, int], rng: random.Random) -> None:
    """Fire each scheduled disruption once the sender has got that far and the runtime is back
    from the previous one (a disruption of a process still starting would test nothing)."""
    port = ports[0]
    for share, action in SCHEDULE:
        await wait_until(lambda share=share: len(run.sent) >= share * plan_size, 3600, 0.05)
        at: dict[str, Any] = {"action": action, "after_messages": len(run.sent),
                              "t": round(time.monotonic() - run.started, 1)}
        if action == "kill":
            at["pid"] = proc.pid
            proc.kill9()
            _mark(proc, "killed")
            down = rng.uniform(0.5, 2.0)
            await anyio.sleep(down)
            at["down_s"] = round(down, 2)
            proc.start()
        elif action == "move":
            at["pid"] = proc.pid
            at["exit_code"] = await anyio.to_thread.run_sync(proc.stop)
            _mark(proc, "stopped")
            port = ports[1]
            proc.start(webhook_port=str(port))
            at["new_url"] = f"http://127.0.0.1:{port}"
        else:
            kind, event = ("teams", "subscriptionRemoved") if action == "remove" else ("mail", "missed")
            handled = _handled(proc.stderr_path, event)
            sub = await _subscription(sb, kind)
            await control(session, sb, "POST", f"/_sandbox/subscriptions/{sub}/{action}")
            at["subscription"] = sub
            # Back in business once the runtime has acted on it (and made a new subscription).
            at["handled"] = await wait_until(lambda: _handled(proc.stderr_path, event) > handled, 120, 0.2)
            if action == "remove":
                await wait_until(lambda: sub not in {s.id for s in live_subscriptions(sb)}
                                 and len(live_subscriptions(sb)) == 2, 120, 0.2)
        at["back_after_s"] = await _until_ready(session, sb, port)
        run.actions.append(at)


def _sink(path: Path) -> dict[str, Any]:
    """Parse the sink's JSON lines: keys in order, with the process segment each was printed in."""
    segments = 0
    keys: list[tuple[str, int]] = []
    boundaries: list[str] = []  # boundaries[i]: how process i ended ("killed" or "stopped")
    torn = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except ValueError:
                torn += 1  # a line cut by kill -9 in the middle of a write
                continue
            if MARKER in item:
                segments += 1
                boundaries.append(str(item[MARKER]))
                continue
            keys.append((str(item.get("key")), segments))
    return {"keys": keys, "torn": torn, "segments": segments + 1, "boundaries": boundaries}


def _analyse_sink(sink: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    counts = Counter(k for k, _ in sink["keys"])
    dups = {k: c for k, c in counts.items() if c > 1}
    replays = 0
    across: Counter[str] = Counter()
    for key in dups:
        segs = [s for k, s in sink["keys"] if k == key]
        # A replay after a crash: the copies were printed by consecutive processes.
        if len(segs) == 2 and segs[1] == segs[0] + 1:
            replays += 1
            across[sink["boundaries"][segs[0]]] += 1
    return {
        "lines": len(sink["keys"]),
        "unique_keys": len(counts),
        "lost": len(expected - set(counts)),
        "unexpected": len(set(counts) - expected),
        "duplicates": sum(c - 1 for c in dups.values()),
        "duplicates_replayed_across_a_restart": replays,
        "replays_by_restart": dict(across),
        "restarts": dict(Counter(sink["boundaries"])),
        "torn_lines": sink["torn"],
        "processes": sink["segments"],
    }


def _runtime_log_facts(path: Path) -> dict[str, Any]:
    events, _ = log_events(path)
    names = Counter(e.get("event") for e in events)
    lifecycle = Counter(e.get("lifecycle_event") for e in events if e.get("event") == "lifecycle_event")
    created = Counter(e.get("reason") for e in events if e.get("event") == "subscription_created")
    resyncs = Counter(e.get("reason") for e in events if e.get("event") == "resync_done")
    errors = [e for e in events if e.get("level") in ("error", "critical") or e.get("event") == "<raw>"]
    return {
        "lines": len(events),
        "lifecycle_handled": dict(lifecycle),
        "subscriptions_created": dict(created),
        "resyncs": dict(resyncs),
        "graph_retries": names.get("graph_retry", 0),
        "poll_failures": names.get("poll_failed", 0),
        "mail_fetch_failures": names.get("mail_fetch_failed", 0),
        "error_lines": len(errors),
        "error_events": dict(Counter(str(e.get("event"))[:60] for e in errors)),
    }


async def _soak(sb: Sandbox, root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(opts.seed)
    tenant = sb.tenant
    extra = add_users(sb, [("katherine", "Katherine Johnson"), ("edsger", "Edsger Dijkstra"),
                           ("barbara", "Barbara Liskov")])
    agent = tenant.users[sb.role("agent_user")]
    people = [tenant.users[sb.role(r)] for r in ("sponsor", "colleague1", "colleague2")] + extra
    groups = {}
    for topic, members in (("Launch room", people[:3]), ("Ops", people[3:])):
        chat = call(sb, create_group_chat, sb, [agent.id, *(u.id for u in members)], topic)
        groups[chat.id] = [u.upn for u in members]
    outsiders = ["partner@fabrikam.example", "vendor@tailspin.example"]
    plan = _plan(opts.messages, opts.mail_share, rng, [u.upn for u in people], agent.upn, groups, outsiders)

    ports = (free_port(), free_port())
    env = provision_agent(sb, root / "agent", mode=opts.mode, webhook_port=ports[0], log_level="info",
                          log_format="json", reconcile_seconds=opts.reconcile_seconds)
    state = Path(env["AGENTSEAT_STATE_DIR"])
    proc = WatchProcess(env, root / "watch.jsonl", root / "runtime.log")
    for path in (proc.stdout_path, proc.stderr_path):
        path.write_bytes(b"")
    run = Run()
    proc.start()
    try:
        ready = await wait_until(lambda: len(live_subscriptions(sb)) == 2, 90, 0.2)
        if not ready:
            raise RuntimeError(f"the runtime did not subscribe; see {proc.stderr_path}")
        client_states = {s.client_state or "" for s in live_subscriptions(sb)}  # one per subscription
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=opts.concurrency * 2)) as session:
            await control(session, sb, "POST", "/_sandbox/faults",
                          {"notifications": NOTIFICATION_FAULTS, "graph": GRAPH_FAULTS, "seed": opts.seed})
            run.started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_disrupt, session, sb, proc, run, len(plan), ports, rng)
                await _send_all(session, sb, plan, run, opts.concurrency, opts.rate)
            send_s = time.monotonic() - run.started
            expected = set(run.sent.values())

            def converged() -> bool:
                stored = {row[0] for row in inbox_rows(state, "key")}
                printed = {k for k, _ in _sink(proc.stdout_path)["keys"]}
                return expected <= stored and expected <= printed

            settled = await wait_until(converged, opts.settle_timeout, 2.0)
            settle_s = time.monotonic() - run.started - send_s
            sandbox_stats = stats(sb)
            await control(session, sb, "DELETE", "/_sandbox/faults")
        moved = all(s.notification_url.startswith(f"http://127.0.0.1:{ports[1]}/") for s in live_subscriptions(sb))
    finally:
        exit_code = await anyio.to_thread.run_sync(proc.stop)
    client_states |= {s.client_state or "" for s in live_subscriptions(sb)}

    rows = inbox_rows(state, "key, source, text")
    keys = Counter(r[0] for r in rows)
    texts = Counter(r[2] for r in rows)
    sink = _analyse_sink(_sink(proc.stdout_path), expected)
    notif = sandbox_stats["notifications"]
    throttled = sandbox_stats["throttled"]
    graph_requests = sandbox_stats["requests_total"]
    faulted = sum(v for k, v in throttled.items() if k.startswith("fault "))
    figures: dict[str, Any] = {
        "bench": "soak",
        "messages": {"sent": len(run.sent), "planned": len(plan), "dm": run.kinds["dm"],
                     "group_chat": run.kinds["group"], "mail": run.kinds["mail"],
                     "senders": len(people) + len(outsiders), "send_errors_retried": run.send_errors},
        "faults": {
            "notifications": {"configured": NOTIFICATION_FAULTS, "dropped": notif.get("dropped", 0),
                              "duplicated": notif.get("duplicated", 0), "reordered": notif.get("reordered", 0),
                              "delivered_items": notif.get("items", 0), "posts": notif.get("sent", 0),
                              "retried_posts": notif.get("retried", 0), "discarded": notif.get("discarded", 0)},
            "graph": {"requests": graph_requests, "failed_by_fault": faulted,
                      "share": round(faulted / graph_requests, 4) if graph_requests else 0.0,
                      "by_status": {k[6:]: v for k, v in throttled.items() if k.startswith("fault ")},
                      "throttled_by_limits": {k: v for k, v in throttled.items() if not k.startswith("fault ")}},
        },
        "disruptions": {
            "kill9": sum(1 for a in run.actions if a["action"] == "kill"),
            "url_changes": sum(1 for a in run.actions if a["action"] == "move"),
            "subscriptions_on_new_url": moved,
            "lifecycle_sent": {"subscriptionRemoved": notif.get("lifecycle_subscriptionRemoved", 0),
                               "missed": notif.get("lifecycle_missed", 0)},
            "processes": proc.starts,
            "timeline": run.actions,
        },
        "inbox": {
            "events": len(rows), "unique_keys": len(keys),
            "lost": len(expected - set(keys)),
            "unexpected": len(set(keys) - expected),
            "duplicate_keys": sum(c - 1 for c in keys.values()),
            "same_text_stored_twice": sum(c - 1 for c in texts.values() if c > 1),
            "by_source": dict(Counter(r[1] for r in rows)),
        },
        "sink": sink,
        "reconciliation": {
            "reconcile_seconds": opts.reconcile_seconds,
            "forced_resync": "none: startup, lifecycle and the 60 s reconcile timer only",
            "converged": settled,
            "converged_after_send_s": round(settle_s, 1),
        },
        "runtime_log": _runtime_log_facts(proc.stderr_path),
        "log_scan": scan_logs([proc.stderr_path], {**{f"client_state_{n}": cs for n, cs in
                                                      enumerate(sorted(client_states - {""}))},
                                                   "key_passphrase": KEY_PASSPHRASE}, markers=[t for t in texts]),
        "timing": {"send_s": round(send_s, 1), "messages_per_s": round(len(run.sent) / send_s, 1) if send_s else 0,
                   "total_s": round(time.monotonic() - run.started, 1)},
        "final_exit_code": exit_code,
        "artifacts": str(root) if opts.dir else None,
    }
    figures["ok"] = bool(
        settled and figures["inbox"]["lost"] == 0 and sink["lost"] == 0 and figures["inbox"]["unexpected"] == 0
        and sink["unexpected"] == 0 and figures["inbox"]["same_text_stored_twice"] == 0
        and sink["duplicates"] == sink["duplicates_replayed_across_a_restart"]
        and not figures["log_scan"]["findings"]
    )
    return figures


def report(figures: dict[str, Any]) -> str:
    inbox, sink, faults = figures["inbox"], figures["sink"], figures["faults"]
    rows = [
        ["messages sent (dm / group / mail)",
         f"{figures['messages']['sent']} ({figures['messages']['dm']} / {figures['messages']['group_chat']} / "
         f"{figures['messages']['mail']})"],
        ["notifications dropped / duplicated / reordered",
         f"{faults['notifications']['dropped']} / {faults['notifications']['duplicated']} / "
         f"{faults['notifications']['reordered']}"],
        ["graph calls failed by fault", f"{faults['graph']['failed_by_fault']} of {faults['graph']['requests']} "
                                        f"({faults['graph']['share']:.1%})"],
        ["kill -9 / URL changes / processes", f"{figures['disruptions']['kill9']} / "
         f"{figures['disruptions']['url_changes']} / {figures['disruptions']['processes']}"],
        ["lifecycle handled", json.dumps(figures["runtime_log"]["lifecycle_handled"])],
        ["inbox: unique events / lost / unexpected", f"{inbox['unique_keys']} / {inbox['lost']} / {inbox['unexpected']}"],
        ["inbox: by source", json.dumps(inbox["by_source"])],
        ["sink: lines / lost / duplicates (replays)", f"{sink['lines']} / {sink['lost']} / {sink['duplicates']} "
                                                      f"({sink['duplicates_replayed_across_a_restart']})"],
        ["converged after sending (s)", figures["reconciliation"]["converged_after_send_s"]],
        ["log lines with secrets", json.dumps(figures["log_scan"]["findings"])],
        ["time: send / total (s)", f"{figures['timing']['send_s']} / {figures['timing']['total_s']}"],
        ["result", "OK" if figures["ok"] else "FAILED"],
    ]
    return table(["soak", "value"], rows)


async def main(argv: list[str]) -> dict[str, Any]:
    """Run the soak; print a table and one JSON line; return the figures."""
    opts = _parse(list(argv))
    configure("warning")  # the sandbox's own logs; the runtime's go to its log file
    with keep_or_temp(opts.dir, "agentseat-soak-") as root, SandboxThread(root / "sandbox") as sb:
        figures = await _soak(sb, root, opts)
    print(report(figures))
    print(json.dumps(figures, separators=(",", ":")))
    return figures


if __name__ == "__main__":
    sys.exit(0 if anyio.run(main, sys.argv[1:])["ok"] else 1)
