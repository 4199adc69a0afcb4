"""Attack corpus: forged and malformed notifications and handshakes against a live runtime webhook.

`python -m bench.attack [--quick]` (or `python -m bench attack`). One sandbox
tenant, one agent, one `agentseat watch --mode webhook` process with debug logs
in JSON. Then:

1. every kind of bench/_attack_corpus.py (45 kinds, ~270 cases) is sent in turn;
   a header slowloris holds connections open in the background meanwhile. The
   last kinds follow one captured genuine POST further (bench/_attack_claims.py,
   bench/_attack_lifecycle.py): forged sponsor claims, basic-item floods and
   lifecycle floods, each with the Graph requests it causes counted at the sandbox;
2. 10,000 bodies that Hypothesis draws around the notification schema
   (bench/_attack_fuzz.py) are POSTed with bounded concurrency;
3. every log line the runtime wrote is scanned for token, assertion and key
   material, the clientState, the key passphrase and the plaintext of every
   message forged;
4. tag injection (bench/_attack_tags.py): text carrying context tags is sent
   through a second sandbox tenant and read back over MCP from `agentseat serve`
   through the push and every read tool; in the same session a relayed permission
   prompt is answered by a forged sponsor `yes` under a captured POST.

Each case is judged:
- crashed: a 5xx the runtime does not answer on purpose, a connection dropped
  without an answer, the process died, or an error or traceback was logged;
- leaked: a secret (clientState, a genuine token, key material, a forged
  message's plaintext) in a response or a log line, an event stored from a
  forged notification, a forged claim stored as the sponsor's, a forged lifecycle
  event acted on beyond its bound, a Graph read caused by a basic item, or a
  context tag left raw in a tool result;
- rejected: anything else (the constant 202 of Graph's rules, a 4xx, a handshake refused).
Kinds that must store exactly one event (replays) are judged by the inbox too.
Prints a table and a final JSON line; exit code 0 when nothing crashed or leaked.
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from cryptography import x509

from agentseat.config import Settings
from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.chats import ensure_one_on_one

from ._attack_corpus import KINDS, Kind, Outcome, Target, post, slowloris_headers
from ._attack_lifecycle import subscriptions_view
from ._attack_tags import report_rows as tag_rows
from ._attack_tags import tag_injection
from ._harness import (
    JWT,
    KEY_PASSPHRASE,
    PEM,
    SandboxThread,
    WatchProcess,
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

BACKGROUND = "slowloris_headers"
#: The colleague the runtime allowlists, when the build has an allowlist (AGENTSEAT_ALLOW).
ALLOWED_ROLE = "colleague2"


@dataclass
class KindResult:
    name: str
    what: str
    cases: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    crashed: int = 0
    leaked: int = 0
    notes: list[str] = field(default_factory=list)
    limit: bool = False
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"what": self.what, "cases": len(self.cases), "rejected": self.rejected, "crashed": self.crashed,
                "leaked": self.leaked, "limit": self.limit, "notes": self.notes, "seconds": round(self.seconds, 2),
                "detail": self.cases}


def _secrets_in(data: str, t: Target) -> list[str]:
    """Which secrets appear in a response (the handshake echo of the attacker's own token is not one)."""
    found = []
    if any(cs and cs in data for cs in (t.client_state, t.mail_client_state)):
        found.append("client_state")
    if any(tok in data for tok in t.tokens):
        found.append("genuine_token")
    if PEM.search(data):
        found.append("pem_block")
    if KEY_PASSPHRASE in data:
        found.append("key_passphrase")
    if any(m in data for m in t.markers):
        found.append("message_plaintext")
    return found


def judge_case(o: Outcome, t: Target) -> tuple[str, str]:
    """(verdict, why) for one case."""
    if o.problem:
        verdict = o.problem.split(":", 1)[0]
        return ("crashed" if verdict in ("crash", "unbounded") else "leaked"), o.problem
    leaks = _secrets_in(o.body.decode("utf-8", "replace") + o.headers, t)
    if leaks:
        return "leaked", f"response holds {', '.join(leaks)}"
    if o.status is not None and o.status >= 500 and o.status not in o.allowed:
        return "crashed", f"HTTP {o.status}"
    if o.status is None and None not in o.allowed:
        return "crashed", f"no answer ({o.error or 'connection closed'})"
    if o.status not in o.allowed:
        return "rejected", f"HTTP {o.status} (expected {sorted(s for s in o.allowed if s)})"
    return "rejected", ""


def _log_problems(lines: list[dict[str, Any]], t: Target) -> tuple[list[str], list[str]]:
    """(crash signs, leak signs) in new log lines."""
    crashes, leaks = [], []
    for line in lines:
        text = json.dumps(line) if line.get("event") != "<raw>" else str(line.get("raw"))
        if line.get("event") == "<raw>":
            crashes.append(f"unstructured log line: {text[:80]}")
        elif line.get("level") in ("error", "critical") or "exception" in line or "exc_info" in line:
            crashes.append(f"{line.get('level')} {line.get('event')}")
        found = [s for s in _secrets_in(text, t) if s != "message_plaintext"] + (
            ["jwt"] if JWT.search(text) else []) + (["message_plaintext"] if any(m in text for m in t.markers) else [])
        if found:
            leaks.append(f"log line {line.get('event')} holds {', '.join(sorted(set(found)))}")
    return crashes, leaks


async def run_kind(session: aiohttp.ClientSession, t: Target, kind: Kind, *, quick: bool,
                   inbox_keys: Callable[[], set[str]], log_path: Path, alive: Callable[[], bool],
                   log_offset: int) -> tuple[KindResult, int]:
    """Send one kind, then judge its cases, the inbox, the process and the new log lines."""
    result = KindResult(kind.name, kind.what, limit=kind.limit)
    before = inbox_keys()
    began = time.monotonic()
    outcomes = await kind.run(session, t, quick)
    result.seconds = time.monotonic() - began
    await anyio.sleep(0.1)  # stderr is line-buffered; this only lets the last lines land
    new_keys = inbox_keys() - before
    lines, log_offset = log_events(log_path, log_offset)
    for o in outcomes:
        verdict, why = judge_case(o, t)
        result.cases.append({"case": o.case, "status": o.status, "error": o.error, "verdict": verdict,
                             "why": why, "note": o.note, "seconds": round(o.seconds, 3)})
        setattr(result, verdict, getattr(result, verdict) + 1)
    wanted = {o.note for o in outcomes if o.note.startswith(("teams:", "mail:"))}  # genuine messages sent
    unexpected = new_keys - wanted
    missing = wanted - inbox_keys()
    if unexpected:
        result.leaked += 1
        result.notes.append(f"{len(unexpected)} event(s) stored from forged notifications")
    if missing:
        result.notes.append(f"{len(missing)} genuine notification(s) not stored")
        result.crashed += 1
    if kind.events:
        result.notes.append(f"events stored: {len(new_keys)} (expected {kind.events})")
    crashes, leaks = _log_problems(lines, t)
    if crashes:
        result.crashed += 1
        result.notes.append("logged: " + "; ".join(sorted(set(crashes)))[:300])
    if leaks:
        result.leaked += 1
        result.notes.append("; ".join(sorted(set(leaks)))[:300])
    if not alive():
        result.crashed += 1
        result.notes.append("the runtime process died")
    drops = Counter(str(line.get("reason")) for line in lines if line.get("event") == "notification_dropped")
    deferred = Counter(str(line.get("reason")) for line in lines if line.get("event") == "notification_deferred")
    if drops:
        result.notes.append("dropped as " + ", ".join(f"{k}" for k in sorted(drops)))
    if deferred:
        result.notes.append("deferred as " + ", ".join(sorted(deferred)))
    for o in outcomes:
        if o.note and not o.note.startswith(("teams:", "mail:", "not stored")) and o.note not in result.notes:
            result.notes.append(o.note)
    return result, log_offset


async def fuzz(session: aiohttp.ClientSession, t: Target, examples: int, concurrency: int, *,
               inbox_keys: Callable[[], set[str]], log_path: Path, alive: Callable[[], bool], log_offset: int,
               seed: int) -> tuple[dict[str, Any], int]:
    from ._attack_fuzz import generate

    began = time.monotonic()
    corpus = generate(t, examples, seed)
    generated_s = time.monotonic() - began
    before = inbox_keys()
    statuses: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    five_xx: list[str] = []
    slowest = 0.0
    limit = anyio.Semaphore(concurrency)

    async def one(n: int, path: str, ctype: str | None, body: bytes) -> None:
        nonlocal slowest
        async with limit:
            o = await post(session, t, f"fuzz_{n}", body, path=path, content_type=ctype)
        statuses[str(o.status or o.error)] += 1
        paths[path] += 1
        slowest = max(slowest, o.seconds)
        if o.status is None or o.status >= 500 or _secrets_in(o.body.decode("utf-8", "replace") + o.headers, t):
            five_xx.append(f"#{n} {o.status or o.error}: {body[:120]!r}")

    sent_at = time.monotonic()
    async with anyio.create_task_group() as tg:
        for n, (path, ctype, body) in enumerate(corpus.bodies):
            tg.start_soon(one, n, path, ctype, body)
    send_s = time.monotonic() - sent_at
    await anyio.sleep(2.0)  # fetches and lifecycle reactions run after the 202
    new_keys = inbox_keys() - before
    lines, log_offset = log_events(log_path, log_offset)
    crashes, leaks = _log_problems(lines, t)
    forged_stored = new_keys - corpus.genuine_keys
    drops = Counter(str(line.get("reason")) for line in lines if line.get("event") == "notification_dropped")
    figures = {
        "examples": len(corpus.bodies), "generated_s": round(generated_s, 1), "sent_s": round(send_s, 1),
        "concurrency": concurrency, "statuses": dict(statuses), "endpoints": dict(paths),
        "slowest_s": round(slowest, 3),
        "crashed": len(five_xx) + int(bool(crashes)) + int(not alive()),
        "leaked": len(forged_stored) + int(bool(leaks)),
        "genuine_accepted": len(new_keys & corpus.genuine_keys),
        "forged_stored": len(forged_stored),
        "drop_reasons_logged": sorted(drops),
        "lifecycle_acted_on": sum(1 for line in lines if line.get("event") == "lifecycle_event"),
        "problems": (five_xx[:10] + sorted(set(crashes))[:5] + sorted(set(leaks))[:5]
                     + ([] if alive() else ["the runtime process died"])),
    }
    return figures, log_offset


def target_for(sb: Sandbox, env: dict[str, str], base: str, pid: int, log_path: Path | None = None) -> Target:
    """What the attacker and the judge know about a runtime provisioned on `sb`."""
    subs = live_subscriptions(sb)
    teams = next(s for s in subs if "chats" in s.resource.lower())
    mail = next(s for s in subs if "chats" not in s.resource.lower())
    tenant = sb.tenant
    agent = tenant.users[sb.role("agent_user")]
    colleague = tenant.users[sb.role("colleague1")]
    chat, _ = call(sb, ensure_one_on_one, sb, colleague.id, agent.id)
    sponsor, allowed = tenant.users[sb.role("sponsor")], tenant.users[sb.role(ALLOWED_ROLE)]
    sponsor_chat, _ = call(sb, ensure_one_on_one, sb, sponsor.id, agent.id)
    state = Path(env["AGENTSEAT_STATE_DIR"])

    async def sandbox(method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as session:
            return await control(session, sb, method, path, body)
    certificate = x509.load_der_x509_certificate(base64.b64decode(teams.encryption_certificate or ""))
    signing = sb.pki.active
    return Target(
        base=base, pid=pid, tenant_id=tenant.tenant_id, audience=teams.notification_url_app_id or teams.app_id,
        teams_sub=teams.id, mail_sub=mail.id, client_state=teams.client_state or "", certificate=certificate,
        certificate_id=teams.encryption_certificate_id or "", chat_id=chat.id,
        sender={"id": colleague.id, "upn": colleague.upn, "name": colleague.display_name},
        agent_user_id=agent.id, signing_key=signing.key, kid=signing.kid,  # type: ignore[arg-type]
        graph_requests=lambda: dict(stats(sb)["requests"]),
        subscription_ids=lambda: {s.id for s in live_subscriptions(sb)},
        mail_client_state=mail.client_state or "",
        agent_upn=agent.upn, sponsor={"id": sponsor.id, "upn": sponsor.upn, "name": sponsor.display_name},
        sponsor_chat_id=sponsor_chat.id, allowed={"id": allowed.id, "upn": allowed.upn, "name": allowed.display_name},
        allowlist=env.get("AGENTSEAT_ALLOW") == allowed.upn,
        inbox=lambda: inbox_rows(state, "key, trust, confirmed, text"),
        log_path=log_path, sandbox=sandbox, subscriptions=lambda: subscriptions_view(live_subscriptions(sb)),
        runtime_subscriptions=lambda: runtime_subscriptions(state),
    )


def runtime_subscriptions(state: Path) -> dict[str, dict[str, Any]]:
    """What the runtime holds by kind (its inbox's `subscriptions` meta key), without secrets."""
    path = state / "inbox.db"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT v FROM meta WHERE k = 'subscriptions'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    held = json.loads(row[0]) if row and row[0] else {}
    return {kind: {k: v for k, v in data.items() if k != "client_state"} for kind, data in held.items()}


async def start_runtime(sb: Sandbox, root: Path, *, log_level: str = "debug") -> tuple[WatchProcess, dict[str, str], int]:
    port = free_port()
    env = provision_agent(sb, root / "agent", webhook_port=port, log_level=log_level, log_format="json")
    if {"allow", "inbound_policy"} <= set(Settings.model_fields):
        # An allowlisted colleague (confirmed with Graph like the sponsor); everyone else stays open
        # (stored as untrusted data), as the kinds that store a genuine-looking message expect.
        env |= {"AGENTSEAT_ALLOW": sb.tenant.users[sb.role(ALLOWED_ROLE)].upn, "AGENTSEAT_INBOUND_POLICY": "tenant"}
    proc = WatchProcess(env, root / "watch.jsonl", root / "runtime.log")
    for path in (proc.stdout_path, proc.stderr_path):
        path.write_bytes(b"")
    proc.start()

    async def up() -> bool:
        if len(live_subscriptions(sb)) != 2:
            return False
        try:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/health") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    with anyio.fail_after(90):
        while not await up():
            if not proc.alive():
                raise RuntimeError(f"the runtime exited; see {proc.stderr_path}")
            await anyio.sleep(0.2)
    return proc, env, port


async def _attack(sb: Sandbox, root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    proc, env, port = await start_runtime(sb, root)
    state = Path(env["AGENTSEAT_STATE_DIR"])
    t = target_for(sb, env, f"http://127.0.0.1:{port}", proc.pid, proc.stderr_path)

    def inbox_keys() -> set[str]:
        return {row[0] for row in inbox_rows(state, "key")}

    began = time.monotonic()
    results: list[KindResult] = []
    offset = 0
    try:
        connector = aiohttp.TCPConnector(limit=max(64, opts.concurrency))
        async with aiohttp.ClientSession(connector=connector) as session:
            background: list[Any] = []
            async with anyio.create_task_group() as tg:
                if not opts.quick:
                    async def hold() -> None:
                        background.extend(await slowloris_headers(session, t, False, bound=opts.slowloris_bound))
                    tg.start_soon(hold)
                for kind in KINDS:
                    if kind.name == BACKGROUND and not opts.quick:
                        continue
                    print(f"attack: {kind.name}", file=sys.stderr, flush=True)
                    result, offset = await run_kind(session, t, kind, quick=opts.quick, inbox_keys=inbox_keys,
                                                    log_path=proc.stderr_path, alive=proc.alive, log_offset=offset)
                    results.append(result)
                    if not proc.alive():
                        proc.start()  # carry on; the death is counted against the kind
                        await wait_until(lambda: len(live_subscriptions(sb)) == 2, 60)
            if background:
                kind = next(k for k in KINDS if k.name == BACKGROUND)
                result = KindResult(kind.name, kind.what)
                for o in background:
                    verdict, why = judge_case(o, t)
                    result.cases.append({"case": o.case, "verdict": verdict, "why": why, "note": o.note,
                                         "seconds": round(o.seconds, 1)})
                    setattr(result, verdict, getattr(result, verdict) + 1)
                held = [o.seconds for o in background]
                result.notes.append(f"{len(held)} connections closed by the server after "
                                    f"{min(held):.1f}-{max(held):.1f} s (bound {opts.slowloris_bound:.0f} s)")
                results.insert(next(i for i, r in enumerate(results) if r.name == "slowloris_body") + 1, result)
            print(f"attack: hypothesis ({opts.examples} bodies)", file=sys.stderr, flush=True)
            fuzzed, offset = await fuzz(session, t, opts.examples, opts.concurrency, inbox_keys=inbox_keys,
                                        log_path=proc.stderr_path, alive=proc.alive, log_offset=offset,
                                        seed=opts.seed)
    finally:
        exit_code = await anyio.to_thread.run_sync(proc.stop)
    print("attack: tag injection through the MCP read tools", file=sys.stderr, flush=True)
    tags = await tag_injection(root)
    # Every subscription has its own clientState (and a recreation makes new ones): none may be logged.
    secrets = {t.client_state, t.mail_client_state} | {s.client_state or "" for s in live_subscriptions(sb)}
    scan = scan_logs([proc.stderr_path], {**{f"client_state_{n}": cs for n, cs in enumerate(sorted(secrets - {""}))},
                                          "key_passphrase": KEY_PASSPHRASE}, markers=t.markers)
    counted = [r for r in results if not r.limit]
    totals = {
        "kinds": len(results), "cases": sum(len(r.cases) for r in results),
        "rejected": sum(r.rejected for r in counted),
        "crashed": sum(r.crashed for r in counted) + fuzzed["crashed"] + tags["crashed"],
        "leaked": sum(r.leaked for r in counted) + fuzzed["leaked"] + sum(scan["findings"].values()) + tags["leaked"],
        "fuzz_examples": fuzzed["examples"],
    }
    return {
        "bench": "attack",
        "quick": opts.quick,
        "kinds": {r.name: r.row() for r in results},
        "limits": [r.name for r in results if r.limit],
        "fuzz": fuzzed,
        "tags": tags,
        "graph_cost": t.costs,
        "log_scan": scan,
        "totals": totals,
        "runtime": {"exit_code": exit_code, "starts": proc.starts},
        "seconds": round(time.monotonic() - began, 1),
        "artifacts": str(root) if opts.dir else None,
        "ok": totals["crashed"] == 0 and totals["leaked"] == 0,
    }


def report(figures: dict[str, Any]) -> str:
    rows = []
    for name, r in figures["kinds"].items():
        note = "; ".join(n for n in r["notes"] if not n.startswith("dropped as"))
        drops = next((n for n in r["notes"] if n.startswith("dropped as")), "")
        verdict = "LIMIT (accepted, see notes)" if r["limit"] else ""
        rows.append([name, r["cases"], r["rejected"], r["crashed"], r["leaked"],
                     (verdict or note or drops)[:110]])
    f = figures["fuzz"]
    rows.append([f"hypothesis ({f['examples']} bodies)", f["examples"], f["examples"] - f["crashed"] - f["leaked"],
                 f["crashed"], f["leaked"], f"statuses {f['statuses']}, genuine accepted {f['genuine_accepted']}"])
    rows += tag_rows(figures["tags"])
    out = [table(["kind", "cases", "rejected", "crashed", "leaked", "notes"], rows)]
    if figures.get("graph_cost"):
        out.append("\nGraph requests caused by one captured POST's forgeries (sandbox counters, diffed):")
        out.append(table(["forgery", "sent", "graph requests", "outcome"], [
            [name, c["sent"], ", ".join(f"{k} {v}" for k, v in c["graph"].items()) or "0", c["outcome"]]
            for name, c in figures["graph_cost"].items()]))
    scan = figures["log_scan"]
    out.append(f"log scan: {scan['lines']} lines, findings {scan['findings'] or 'none'}")
    tot = figures["totals"]
    out.append(f"total: {tot['kinds']} kinds, {tot['cases']} cases + {tot['fuzz_examples']} generated bodies "
               f"+ {len(figures['tags']['cases'])} tool reads; "
               f"crashed {tot['crashed']}, leaked {tot['leaked']} -> {'OK' if figures['ok'] else 'FAILED'}")
    return "\n".join(out)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench attack", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one case per kind, 500 generated bodies")
    p.add_argument("--examples", type=int, help="Hypothesis bodies (default 10,000; 500 with --quick)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--slowloris-bound", type=float, default=45.0,
                   help="seconds a half-open connection may live before it counts as unbounded")
    p.add_argument("--seed", type=int, default=0, help="0: Hypothesis derandomized (the same bodies every run)")
    p.add_argument("--dir", help="keep the sandbox, agent state and runtime log here")
    args = p.parse_args(argv)
    args.examples = args.examples or (500 if args.quick else 10_000)
    return args


async def main(argv: list[str]) -> dict[str, Any]:
    """Run the attack corpus; print a table and one JSON line; return the figures."""
    opts = _parse(list(argv))
    configure("warning")
    with keep_or_temp(opts.dir, "agentseat-attack-") as root, SandboxThread(root / "sandbox") as sb:
        figures = await _attack(sb, root, opts)
    print(report(figures))
    print(json.dumps(figures, separators=(",", ":"), default=str))
    return figures


if __name__ == "__main__":
    sys.exit(0 if anyio.run(main, sys.argv[1:])["ok"] else 1)
