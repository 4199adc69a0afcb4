"""Figure 1: inbound latency, from the sandbox accepting a chat message to a real MCP
client receiving its `notifications/claude/channel` push.

Three ways: webhook mode; poll mode at entrabot's intervals (5 s chats, 60 s mail);
poll mode at our defaults. A steady 10 messages/s (open loop: each send is scheduled,
none waits for the one before) of DMs to the agent from three users. Latency is
`push received - message created`, both on the sandbox clock.

In webhook mode the sandbox also records when each notification's POST started
(bench/sandbox_server.py), which splits the total into the emulated Graph's
queueing (`created -> POST start`) and our own overhead (`POST start -> push parsed`:
the loopback HTTP hop, verify, decrypt, store, claim, the MCP write, the pipe to the
client and the client transport's parse of the line, which is what the floor counts
as "pipe write + parse" (bench/floors.py); an upper bound on the time inside our
process). What the client's session does after that (its dispatch to the handler)
is the host's, reported apart (`client_dispatch_ms`, and `own_overhead_to_handler_ms`
ending at the handler). The runtime's `channel_pushed` log line, written just after
the batch reached the pipe, gives `in_runtime_ms`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from .harness import Push, SandboxHost, Served, summary_ms

RATE = 10.0  # messages per second
#: A Graph response time for the run that makes the sponsor's confirmation GET cost a real round
#: trip (issue 11 puts Graph's at about 100-300 ms; loopback makes it nearly free).
GRAPH_MS = 100.0
_SEQ = re.compile(r"\bseq=(\d+)")
SENDERS = ("sponsor", "colleague1", "colleague2")
#: Who sends each DM of a steady run, in turn: the sponsor one in ten (1/s at RATE). Each
#: sponsor DM costs one Graph GET in its chat, and Graph serves about one request per second
#: per chat (throttling-limits, Teams: GET /chats/{id}/messages, 1 per chat); a person types slower.
ROTATION = ("sponsor",) + ("colleague1", "colleague2") * 4 + ("colleague1",)


@dataclass
class Traffic:
    """What one latency run sent and what came back."""

    sent: list[str] = field(default_factory=list)  # message ids, in send order
    senders: dict[str, str] = field(default_factory=dict)  # message id -> sender role
    late_sends: int = 0  # sends that started > 50 ms behind schedule (the generator lagged)


async def steady_dms(host: SandboxHost, seconds: float, *, rate: float = RATE,
                     tag: str = "lat") -> Traffic:
    """`rate` DMs per second to the agent for `seconds`, open loop, rotating senders."""
    traffic = Traffic()
    agent = host.upn("agent_user")
    senders = [host.upn(r) for r in ROTATION]
    count = int(seconds * rate)

    async def one(i: int) -> None:
        posted = await host.dm(senders[i % len(senders)], agent, f"{tag} message {i}")
        traffic.sent.append(posted["message_id"])
        traffic.senders[posted["message_id"]] = ROTATION[i % len(ROTATION)]

    start = anyio.current_time() + 0.05
    async with anyio.create_task_group() as tg:
        for i in range(count):
            due = start + i / rate
            delay = due - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            elif delay < -0.05:
                traffic.late_sends += 1
            tg.start_soon(one, i)
    return traffic


async def measure(host: SandboxHost, served: Served, traffic: Traffic, *, with_sends: bool) -> dict[str, Any]:
    """Latency summaries for the messages of `traffic` that `served` pushed."""
    created = await host.created_times()
    got = served.received(traffic.sent)
    total = [got[m].at - created[m] for m in traffic.sent if m in got]
    out: dict[str, Any] = {"sent": len(traffic.sent), "received": len(got), "late_sends": traffic.late_sends,
                           "total_ms": summary_ms(total)}
    # A sponsor's DM is confirmed with one Graph GET before it is stored; the others are
    # stored from the notification alone, marked untrusted (issue 10).
    by_sender: dict[str, list[float]] = {"sponsor": [], "untrusted": []}
    for m in traffic.sent:
        if m in got:
            role = "sponsor" if traffic.senders.get(m) == "sponsor" else "untrusted"
            by_sender[role].append(got[m].at - created[m])
    out["by_sender_ms"] = {role: summary_ms(values) for role, values in by_sender.items() if values}
    if with_sends:
        sends = await host.sends()
        # Own overhead is the path every message takes; a sponsor's DM adds its Graph GET on
        # top, reported apart (by_sender_ms, sponsor_own_overhead_ms).
        untrusted = {m for m, role in traffic.senders.items() if role != "sponsor"}
        both = [m for m in traffic.sent if m in got and m in sends and m in untrusted]
        sponsor = [m for m in traffic.sent if m in got and m in sends and m not in untrusted]
        out["sponsor_own_overhead_ms"] = summary_ms([got[m].at - sends[m][0] for m in sponsor])
        out["graph_queue_ms"] = summary_ms([sends[m][0] - created[m] for m in both])
        out["own_overhead_ms"] = summary_ms([_parsed(got[m]) - sends[m][0] for m in both])
        out["own_overhead_to_handler_ms"] = summary_ms([got[m].at - sends[m][0] for m in both])
        out["client_dispatch_ms"] = summary_ms([got[m].at - _parsed(got[m]) for m in both])
        out["webhook_answer_ms"] = summary_ms([sends[m][1] - sends[m][0] for m in both])
        pushed = pushed_at(served, host)
        logged = [m for m in both if m in pushed]
        if logged:
            # Split at the runtime's `channel_pushed` line: before it, our process; after it,
            # the stdout pipe and the client's parse.
            out["in_runtime_ms"] = summary_ms([pushed[m] - sends[m][0] for m in logged])
    return out


def _parsed(push: Push) -> float:
    return push.parsed_at or push.at  # a client without the transport stamp: the handler's time


def pushed_at(served: Served, host: SandboxHost) -> dict[str, float]:
    """message id -> when the runtime logged `channel_pushed` for it, on the sandbox clock.

    The runtime stamps its log with the wall clock; the offset to the sandbox clock is read
    now (both tick at the same rate at speed 1). Seqs map to message ids through the
    runtime's inbox, opened read-only.
    """
    state = served.state_dir
    if state is None or not (state / "inbox.db").exists():
        return {}
    offset = time.time() - host.now()
    by_seq: dict[int, float] = {}
    for line in served.log_path.read_text(errors="replace").splitlines():
        if " channel_pushed " not in line:
            continue
        match = _SEQ.search(line)
        if not match:
            continue
        try:
            wall = datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        by_seq.setdefault(int(match.group(1)), wall - offset)
    with sqlite3.connect(f"file:{state / 'inbox.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT seq, message_id FROM events").fetchall()
    return {mid: by_seq[seq] for seq, mid in rows if seq in by_seq}


async def run_traffic(host: SandboxHost, served: Served, seconds: float, drain: float,
                      *, with_sends: bool, tag: str, graph_ms: float = 0.0) -> dict[str, Any]:
    """Steady traffic; `graph_ms` delays every Graph response of the sandbox meanwhile."""
    if graph_ms:
        await host.request("POST", "/_sandbox/behaviour", {"graph_latency_ms": [graph_ms, graph_ms]})
    try:
        traffic = await steady_dms(host, seconds, tag=tag)
        await served.wait_for(traffic.sent, drain)
        out = await measure(host, served, traffic, with_sends=with_sends)
    finally:
        if graph_ms:
            await host.request("POST", "/_sandbox/behaviour", {"graph_latency_ms": [0, 0]})
    return {**out, "graph_ms": graph_ms}


async def warm_up(host: SandboxHost, served: Served, count: int = 5,
                  timeout: float = 60.0) -> bool:
    """A few messages first: the first notification fetches the JWKS, the first push warms caches."""
    agent = host.upn("agent_user")
    ids = []
    for i in range(count):
        ids.append((await host.dm(host.upn(SENDERS[i % 3]), agent, f"warm-up {i}"))["message_id"])
        await anyio.sleep(0.05)
    return await served.wait_for(ids, timeout)


def poll_env(env: dict[str, str], chat_seconds: float | None, mail_seconds: float | None) -> dict[str, str]:
    """Poll mode (no tunnel) at the given intervals; None keeps our default."""
    out = {**env, "AGENTSEAT_MODE": "poll", "AGENTSEAT_TUNNEL": "none"}
    if chat_seconds is not None:
        out["AGENTSEAT_CHAT_POLL_SECONDS"] = str(chat_seconds)
    if mail_seconds is not None:
        out["AGENTSEAT_MAIL_POLL_SECONDS"] = str(mail_seconds)
    return out


def webhook_env(env: dict[str, str], port: int | None = None) -> dict[str, str]:
    out = {**env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}
    if port:
        out["AGENTSEAT_WEBHOOK_PORT"] = str(port)
    return out
